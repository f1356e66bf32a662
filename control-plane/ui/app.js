// The Flotilla dashboard: a read-only view of the fleet, kept current by the
// API's watches (no reloads, no polling of objects). Hand-written, no build
// step and no dependencies: the server embeds these three files, so nothing
// is fetched from anywhere else at run time. Every value from the cluster is
// put in the page as text (never as HTML): names, messages and logs are
// written by users and guests.

const API = '/apis/flotilla.dev/v1';
const TOKEN_KEY = 'flotilla-token';
const EVENTS_SHOWN = 15;
const LOG_KEPT = 256 * 1024;
const SVG = 'http://www.w3.org/2000/svg';
const INITIAL_EVENTS_END = 'flotilla.dev/initial-events-end';

// What the watches have seen, by "namespace/name".
const cluster = {
  nodes: new Map(),
  workloads: new Map(),
  instances: new Map(),
  events: new Map(),
  revisions: new Map(),
  budgets: new Map(),
  jobs: new Map(),
};
let token = sessionStorage.getItem(TOKEN_KEY);
let watches = [];
let page = null; // { route, render(), stop() }
let renderQueued = false;

// ---- helpers -------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function keyOf(o) {
  return `${o.metadata.namespace || ''}/${o.metadata.name}`;
}

function workloadHref(ns, name) {
  return `#/workloads/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function api(path, options = {}) {
  return fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${token}`, ...(options.headers || {}) },
  });
}

async function statusMessage(response) {
  try {
    const status = await response.json();
    return status.message || response.statusText;
  } catch {
    return response.statusText;
  }
}

// Kubernetes quantities, as the scheduler reads them.
function memoryBytes(q) {
  if (!q) return 0;
  const m = /^([0-9.]+)\s*(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(String(q));
  if (!m) return 0;
  const unit = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
  return parseFloat(m[1]) * (unit[m[2]] || 1);
}

function cpuMillis(q) {
  if (!q) return 0;
  const text = String(q);
  return text.endsWith('m') ? parseFloat(text) : parseFloat(text) * 1000;
}

function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

function age(timestamp) {
  if (!timestamp) return '';
  const s = Math.max(0, (Date.now() - Date.parse(timestamp)) / 1000);
  if (s < 90) return `${Math.round(s)}s`;
  if (s < 90 * 60) return `${Math.round(s / 60)}m`;
  if (s < 36 * 3600) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}

// A bar of `used` against `total`; `level` colours a progress bar by its
// state (ok, warn, bad) instead of by how full it is.
function bar(used, total, label, level) {
  const share = total > 0 ? Math.min(1, used / total) : 0;
  const kind = level ? `bar progress ${level}` : share >= 0.9 ? 'bar full' : 'bar';
  const fill = h('span', {});
  // Through the CSSOM: the page's policy refuses style attributes.
  fill.style.width = `${(share * 100).toFixed(1)}%`;
  return h('span', {},
    h('span', { class: kind, title: label }, fill),
    h('span', { class: 'bar-label' }, label));
}

function table(headings, rows, empty) {
  if (rows.length === 0) return h('p', { class: 'muted' }, empty);
  return h('table', {}, h('thead', {}, h('tr', {}, headings.map((t) => h('th', {}, t)))),
    h('tbody', {}, rows));
}

// ---- watches -------------------------------------------------------------

function setConnection() {
  const down = watches.filter((w) => !w.live && !w.forbidden).length;
  const hidden = watches.filter((w) => w.forbidden).length;
  const scope = hidden === 0 ? '' : ` (this token may not see ${watches.filter((w) => w.forbidden).map((w) => w.kind).join(', ')})`;
  document.getElementById('connection').textContent =
    (down === 0 ? 'live' : `reconnecting (${down} of ${watches.length} watches)…`) + scope;
}

// Lists then follows `path` into `map`: ADDED/MODIFIED/DELETED as they come,
// resumed from the last resourceVersion after a dropped stream, re-listed
// from scratch when the server answers 410 Gone (history compacted). A
// re-list fills a fresh map, swapped in at the bookmark that ends the list,
// so the tables never show an empty fleet meanwhile.
function watch(path, map) {
  const w = { live: false, forbidden: null, kind: path.split('/').pop(), controller: new AbortController() };
  let version = '';
  let listing = null; // the fresh map while a list arrives
  const apply = (event) => {
    const o = event.object || {};
    if (event.type === 'ERROR') {
      if (o.code === 410) version = '';
      throw new Error(o.message || 'watch error');
    }
    const metadata = o.metadata || {};
    if (event.type === 'BOOKMARK') {
      if (metadata.resourceVersion) version = metadata.resourceVersion;
      if (listing && (metadata.annotations || {})[INITIAL_EVENTS_END]) {
        map.clear();
        for (const [k, v] of listing) map.set(k, v);
        listing = null;
        queueRender();
      }
      return;
    }
    const target = listing || map;
    if (event.type === 'DELETED') target.delete(keyOf(o));
    else target.set(keyOf(o), o);
    // Only once the list is whole is its last revision one to resume from.
    if (!listing && metadata.resourceVersion) version = metadata.resourceVersion;
    if (!listing) queueRender();
  };
  (async () => {
    while (!w.controller.signal.aborted) {
      try {
        const separator = path.includes('?') ? '&' : '?';
        const resume = version ? `&resourceVersion=${encodeURIComponent(version)}` : '';
        const response = await api(`${path}${separator}watch=true${resume}`, {
          signal: w.controller.signal,
        });
        if (response.status === 401) {
          signOut(`the server refused the token: ${await statusMessage(response)}`);
          return;
        }
        // A namespaced token may not see every kind (nodes are
        // cluster-scoped): that table stays empty, the rest goes on.
        if (response.status === 403) {
          w.forbidden = await statusMessage(response);
          setConnection();
          return;
        }
        if (response.status === 410) { version = ''; continue; }
        if (!response.ok) throw new Error(await statusMessage(response));
        listing = version ? null : new Map();
        w.live = true;
        setConnection();
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let newline;
          while ((newline = buffer.indexOf('\n')) >= 0) {
            const line = buffer.slice(0, newline).trim();
            buffer = buffer.slice(newline + 1);
            if (line) apply(JSON.parse(line));
          }
        }
      } catch (e) {
        if (w.controller.signal.aborted) return;
        console.warn(`watch ${path}: ${e.message}`);
      }
      w.live = false;
      setConnection();
      await sleep(1000);
    }
  })();
  return w;
}

function startWatches() {
  watches = [
    watch(`${API}/nodes`, cluster.nodes),
    watch(`${API}/workloads`, cluster.workloads),
    watch(`${API}/instances`, cluster.instances),
    watch(`${API}/events`, cluster.events),
    watch(`${API}/revisions`, cluster.revisions),
    watch(`${API}/disruptionbudgets`, cluster.budgets),
    watch(`${API}/jobs`, cluster.jobs),
  ];
  setConnection();
}

function stopWatches() {
  for (const w of watches) w.controller.abort();
  watches = [];
  for (const map of Object.values(cluster)) map.clear();
}

function queueRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    if (page) page.render();
  });
}

// ---- what the objects say ------------------------------------------------

function instancesOf(ns, workload) {
  return [...cluster.instances.values()].filter(
    (i) => i.metadata.namespace === ns && i.spec.workload === workload);
}

function requests(template) {
  const r = (template && template.resources) || {};
  const requested = r.requests || {};
  const limits = r.limits || {};
  return {
    memory: memoryBytes(requested.memory || limits.memory),
    cpu: cpuMillis(requested.cpu || limits.cpu),
  };
}

// The workload an instance belongs to: its own word while it exists; for
// one already gone, the workload whose name is the longest prefix of its
// name (instances are named WORKLOAD-SUFFIX, and `web-api-x` is not `web`'s).
function workloadOfInstance(ns, instance) {
  const known = cluster.instances.get(`${ns}/${instance}`);
  if (known) return known.spec.workload;
  let owner = null;
  for (const w of cluster.workloads.values()) {
    const name = w.metadata.name;
    if (w.metadata.namespace === ns && instance.startsWith(`${name}-`)
      && (!owner || name.length > owner.length)) owner = name;
  }
  return owner;
}

const FINISHED = new Set(['Succeeded', 'Failed']);

// What is placed on each node: the requests of the instances bound to it
// that have not finished (as the scheduler counts them).
function allocations() {
  const byNode = new Map();
  for (const i of cluster.instances.values()) {
    const node = i.spec.nodeName;
    if (!node || FINISHED.has((i.status || {}).phase)) continue;
    const a = byNode.get(node) || { memory: 0, cpu: 0, instances: 0 };
    const r = requests(i.spec.template);
    a.memory += r.memory; a.cpu += r.cpu; a.instances += 1;
    byNode.set(node, a);
  }
  return byNode;
}

// Instances that are failing, by how: crash-looping, failed for good, or
// killed for their memory and not back yet.
function failing(instances) {
  const bad = instances.filter((i) => {
    const st = i.status || {};
    return st.phase === 'CrashLoopBackOff' || st.phase === 'Failed'
      || (!st.ready && ((st.lastTermination || {}).reason === 'OOMKilled'));
  });
  if (bad.length === 0) return null;
  const last = lastTermination(bad);
  const phases = bad.map((i) => (i.status || {}).phase);
  // OOMKilled says more than the phase it led to.
  const state = last && last.reason === 'OOMKilled' ? 'OOMKilled'
    : phases.includes('CrashLoopBackOff') ? 'CrashLoopBackOff' : 'Failed';
  const why = terminationText(last) || (bad[0].status || {}).message || '';
  return { state, text: `${bad.length} of ${instances.length} instances ${state}${why ? `: ${why}` : ''}` };
}

// The instances a workload wants: its replicas, or for an every-node one
// what the controller counted (the nodes that match it).
function desired(w) {
  const spec = w.spec || {};
  return (spec.placement || {}).everyNode ? (w.status || {}).desiredReplicas || 0 : spec.replicas ?? 1;
}

// The rollout's state, in the words of `flotilla rollout status`; a failing
// instance outranks progress (a crash loop is not "Progressing").
function rollout(w, instances) {
  const spec = w.spec || {};
  const status = w.status || {};
  const wanted = desired(w);
  const updated = status.updatedReplicas || 0;
  const total = status.replicas || 0;
  const available = status.availableReplicas || 0;
  const progressing = (status.conditions || []).find((c) => c.type === 'Progressing') || {};
  const share = wanted > 0 ? Math.min(1, updated / wanted) : 1;
  if ((status.observedGeneration || 0) < (w.metadata.generation || 0)) {
    return { state: 'Waiting', text: 'waiting for the change to be observed', share, level: 'warn' };
  }
  if (['ProgressDeadlineExceeded', 'RolledBack', 'CanaryAnalysisFailed'].includes(progressing.reason)) {
    return { state: progressing.reason, text: progressing.message || '', share, level: 'bad' };
  }
  const broken = failing(instances);
  if (broken) return { state: broken.state, text: broken.text, share, level: 'bad' };
  const done = updated >= wanted && total <= updated && available >= updated;
  if (spec.paused && !done) return { state: 'Paused', text: `${updated} of ${wanted} updated`, share, level: 'warn' };
  if (status.canary) {
    const steps = (((spec.strategy || {}).canary || {}).steps || []).length;
    const paused = progressing.reason === 'CanaryPaused' ? '; paused until promoted' : '';
    return {
      state: 'Canary',
      text: `step ${Math.min((status.canary.step || 0) + 1, steps)} of ${steps}, ${status.canary.weight || 0}% of requests, ${updated} canary replicas${paused}`,
      share,
      level: 'warn',
    };
  }
  if (done) return { state: 'Complete', text: `${updated} of ${wanted} up to date and available`, share: 1, level: 'ok' };
  const waiting = updated < wanted ? `${updated} of ${wanted} updated`
    : total > updated ? `${total - updated} old replicas terminating`
      : `${available} of ${updated} updated replicas available`;
  return { state: 'Progressing', text: waiting, share, level: 'warn' };
}

function lastTermination(instances) {
  let last = null;
  for (const i of instances) {
    const t = (i.status || {}).lastTermination;
    if (t && t.reason && (!last || (t.finishedAt || '') > (last.finishedAt || ''))) last = t;
  }
  return last;
}

function terminationText(t) {
  if (!t) return '';
  const code = t.exitCode !== undefined && t.exitCode !== null ? ` (exit ${t.exitCode})` : '';
  const why = t.trap || t.message;
  return `${t.reason}${code}${why ? `: ${why}` : ''}`;
}

function phaseClass(phase) {
  if (phase === 'Running' || phase === 'Succeeded') return 'ok';
  if (phase === 'Failed' || phase === 'CrashLoopBackOff') return 'bad';
  return 'warn';
}

function eventsAbout(filter) {
  return [...cluster.events.values()]
    .filter(filter)
    .sort((a, b) => (Date.parse(b.spec.timestamp) || 0) - (Date.parse(a.spec.timestamp) || 0))
    .slice(0, EVENTS_SHOWN);
}

function eventsTable(events) {
  return table(['Age', 'Type', 'Reason', 'Object', 'Message'], events.map((e) => {
    const o = e.spec.involvedObject || {};
    const count = e.spec.count > 1 ? ` (×${e.spec.count})` : '';
    return h('tr', { 'data-event': e.spec.reason },
      h('td', {}, age(e.spec.timestamp)),
      h('td', { class: e.spec.type === 'Warning' ? 'warn' : '' }, e.spec.type),
      h('td', {}, e.spec.reason, count),
      h('td', {}, `${o.kind || ''}/${o.namespace ? `${o.namespace}/` : ''}${o.name || ''}`),
      h('td', { class: 'message' }, e.spec.message));
  }), 'No events.');
}

// ---- the fleet -----------------------------------------------------------

function fleetPage() {
  const summary = h('section', { class: 'card summary', id: 'summary' });
  const nodes = h('section', { class: 'card', id: 'nodes' });
  const workloads = h('section', { class: 'card', id: 'workloads' });
  const jobs = h('section', { class: 'card', id: 'jobs' });
  const budgets = h('section', { class: 'card', id: 'budgets' });
  const events = h('section', { class: 'card', id: 'events' });
  document.getElementById('page').replaceChildren(
    h('h1', {}, 'Fleet'), summary,
    h('h2', {}, 'Nodes'), nodes,
    h('h2', {}, 'Workloads'), workloads,
    h('h2', {}, 'Jobs'), jobs,
    h('h2', {}, 'Disruption budgets'), budgets,
    h('h2', {}, 'Recent events'), events);
  return {
    render() {
      const all = [...cluster.instances.values()];
      const ready = [...cluster.nodes.values()].filter((n) => (n.status || {}).ready).length;
      const running = all.filter((i) => (i.status || {}).phase === 'Running').length;
      summary.replaceChildren(
        h('div', {}, h('b', {}, `${ready}/${cluster.nodes.size}`), 'nodes ready'),
        h('div', {}, h('b', {}, cluster.workloads.size), 'workloads'),
        h('div', {}, h('b', {}, `${running}/${all.length}`), 'instances running'));

      const allocated = allocations();
      const nodeRows = [...cluster.nodes.values()]
        .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))
        .map((n) => {
          const s = n.status || {};
          const a = allocated.get(n.metadata.name) || { memory: 0, cpu: 0, instances: 0 };
          const conditions = [s.ready ? 'Ready' : 'NotReady'];
          if (s.diskPressure) conditions.push('DiskPressure');
          if ((n.spec || {}).unschedulable) conditions.push('SchedulingDisabled');
          const capacity = s.capacityInstances ? ` of ${s.capacityInstances}` : '';
          return h('tr', { 'data-node': n.metadata.name },
            h('td', {}, n.metadata.name),
            h('td', { class: s.ready ? 'ok' : 'bad' }, conditions.join(',')),
            h('td', {}, bar(a.cpu, s.capacityCpuMillis || 0,
              `${Math.round(a.cpu)}m of ${s.capacityCpuMillis || 0}m`)),
            h('td', {}, bar(a.memory, s.capacityMemoryBytes || 0,
              `${bytes(a.memory)} of ${bytes(s.capacityMemoryBytes || 0)}`)),
            h('td', {}, `${a.instances}${capacity}`),
            h('td', {}, s.agentVersion || ''));
        });
      nodes.replaceChildren(table(
        ['Name', 'Status', 'CPU allocated', 'Memory allocated', 'Instances', 'Agent'],
        nodeRows, 'No nodes have joined.'));

      const workloadRows = [...cluster.workloads.values()]
        .sort((a, b) => keyOf(a).localeCompare(keyOf(b)))
        .map((w) => {
          const ns = w.metadata.namespace;
          const name = w.metadata.name;
          const instances = instancesOf(ns, name);
          const restarts = instances.reduce((n, i) => n + ((i.status || {}).restarts || 0), 0);
          const r = rollout(w, instances);
          const s = w.status || {};
          return h('tr', { 'data-workload': `${ns}/${name}` },
            h('td', {}, ns),
            h('td', {}, h('a', { href: workloadHref(ns, name) }, name)),
            h('td', { class: 'ready' }, `${s.readyReplicas || 0}/${desired(w)}`),
            h('td', { class: 'restarts' }, restarts),
            h('td', { class: `rollout ${r.level}`, 'data-rollout': r.state, title: r.text }, bar(r.share, 1, r.state, r.level)),
            h('td', { class: 'message termination' }, terminationText(lastTermination(instances))));
        });
      workloads.replaceChildren(table(
        ['Namespace', 'Name', 'Ready', 'Restarts', 'Rollout', 'Last termination'],
        workloadRows, 'No workloads: apply one with flotilla apply -f FILE.'));
      const jobRows = [...cluster.jobs.values()]
        .sort((a, b) => keyOf(a).localeCompare(keyOf(b)))
        .map((j) => {
          const s = j.status || {};
          const done = (s.conditions || []).find((c) => c.status === 'True');
          const state = done ? done.type : 'Running';
          const level = state === 'Complete' ? 'ok' : state === 'Failed' ? 'bad' : '';
          return h('tr', { 'data-job': keyOf(j) },
            h('td', {}, j.metadata.namespace),
            h('td', {}, j.metadata.name),
            h('td', { class: level, title: done ? `${done.reason}: ${done.message}` : '' }, state),
            h('td', {}, `${s.succeeded || 0}/${(j.spec || {}).completions || 1}`),
            h('td', {}, s.active || 0),
            h('td', {}, s.failed || 0),
            h('td', {}, age(j.metadata.creationTimestamp)));
        });
      jobs.replaceChildren(table(
        ['Namespace', 'Name', 'Status', 'Completions', 'Active', 'Failed', 'Age'],
        jobRows, 'No jobs: apply one (kind: Job) with flotilla apply -f FILE.'));
      const budgetRows = [...cluster.budgets.values()]
        .sort((a, b) => keyOf(a).localeCompare(keyOf(b)))
        .map((b) => {
          const spec = b.spec || {};
          const s = b.status || {};
          const bound = (v) => (v === undefined || v === null ? 'N/A' : String(v));
          return h('tr', { 'data-budget': keyOf(b) },
            h('td', {}, b.metadata.namespace),
            h('td', {}, b.metadata.name),
            h('td', {}, bound(spec.minAvailable)),
            h('td', {}, bound(spec.maxUnavailable)),
            h('td', {}, `${s.currentHealthy || 0}/${s.desiredHealthy || 0}`),
            h('td', { class: (s.disruptionsAllowed || 0) > 0 ? 'ok' : 'bad' }, s.disruptionsAllowed || 0));
        });
      budgets.replaceChildren(table(
        ['Namespace', 'Name', 'Min available', 'Max unavailable', 'Healthy / desired', 'Allowed disruptions'],
        budgetRows, 'No disruption budgets: drains and rollouts are bounded by the workloads\' own strategies only.'));
      events.replaceChildren(eventsTable(eventsAbout(() => true)));
    },
    stop() {},
  };
}

// ---- one workload --------------------------------------------------------

function chart(title, points, lines, format, now) {
  const width = 300;
  const height = 90;
  const from = now - 15 * 60;
  let max = 0;
  for (const p of points) for (const l of lines) max = Math.max(max, l.value(p) || 0);
  const top = max > 0 ? max * 1.15 : 1;
  const x = (t) => ((t - from) / (now - from)) * width;
  const y = (v) => height - 12 - (v / top) * (height - 22);
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  const add = (tag, attrs, text) => {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (text !== undefined) el.textContent = text;
    svg.append(el);
  };
  add('line', { x1: 0, x2: width, y1: height - 12, y2: height - 12, stroke: '#e4e7ec' });
  add('text', { x: 2, y: 9 }, format(top));
  add('text', { x: 2, y: height - 2 }, '15 min ago');
  add('text', { x: width - 20, y: height - 2 }, 'now');
  for (const l of lines) {
    const at = points.filter((p) => l.value(p) !== null && l.value(p) !== undefined);
    if (at.length === 0) continue;
    const coordinates = at.map((p) => `${x(p.time).toFixed(1)},${y(l.value(p)).toFixed(1)}`);
    if (at.length === 1) coordinates.push(`${(x(at[0].time) + 2).toFixed(1)},${y(l.value(at[0])).toFixed(1)}`);
    add('polyline', {
      points: coordinates.join(' '),
      fill: 'none',
      stroke: l.color,
      'stroke-width': 1.5,
      'vector-effect': 'non-scaling-stroke',
    });
  }
  const last = points[points.length - 1];
  const current = last
    ? lines.map((l) => (l.value(last) === null || l.value(last) === undefined ? '–' : format(l.value(last)))).join(' / ')
    : 'no data yet';
  return h('div', { class: 'graph', 'data-graph': title, 'data-points': points.length },
    h('h3', {}, title, h('span', { class: 'now' }, current)), svg);
}

function seconds(v) {
  return v >= 1 ? `${v.toFixed(2)} s` : `${(v * 1000).toFixed(v < 0.01 ? 2 : 0)} ms`;
}

function workloadPage(ns, name) {
  const heading = h('h1', {}, `${ns}/${name}`);
  const rolloutCard = h('section', { class: 'card', id: 'rollout' });
  const instancesCard = h('section', { class: 'card', id: 'instances' });
  const graphs = h('section', { class: 'card graphs', id: 'graphs' });
  const revisionsCard = h('section', { class: 'card', id: 'revisions' });
  const eventsCard = h('section', { class: 'card', id: 'events' });
  const logTitle = h('span', {}, 'Choose an instance above to follow its log.');
  const log = h('pre', { class: 'log', id: 'log' });
  document.getElementById('page').replaceChildren(
    h('p', {}, h('a', { href: '#/' }, '← Fleet')), heading,
    h('h2', {}, 'Rollout'), rolloutCard,
    h('h2', {}, 'Instances'), instancesCard,
    h('h2', {}, 'Usage, last 15 minutes'), graphs,
    h('h2', {}, 'Revisions'), revisionsCard,
    h('h2', {}, 'Events'), eventsCard,
    h('h2', {}, 'Log'), h('section', { class: 'card' }, logTitle, log));

  let following = null; // { instance, controller }
  let stopped = false;

  async function follow(instance) {
    if (following) following.controller.abort();
    const controller = new AbortController();
    following = { instance, controller };
    log.textContent = '';
    logTitle.textContent = `Following ${instance}`;
    queueRender();
    const path = `${API}/namespaces/${encodeURIComponent(ns)}/instances/${encodeURIComponent(instance)}/log?follow=true`;
    try {
      const response = await api(path, { signal: controller.signal });
      if (!response.ok) {
        logTitle.textContent = `Cannot read the log of ${instance}: ${await statusMessage(response)}`;
        return;
      }
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        let text = log.textContent + value;
        if (text.length > LOG_KEPT) text = text.slice(text.length - LOG_KEPT);
        log.textContent = text;
        if (atBottom) log.scrollTop = log.scrollHeight;
      }
      logTitle.textContent = `${instance}: the log ended (the instance stopped)`;
    } catch (e) {
      if (!controller.signal.aborted) logTitle.textContent = `${instance}: ${e.message}`;
    }
  }

  async function pollUsage() {
    while (!stopped) {
      let wait = 15;
      try {
        const response = await api(`${API}/namespaces/${encodeURIComponent(ns)}/workloads/${encodeURIComponent(name)}/usage`);
        if (response.ok) {
          const history = await response.json();
          wait = Math.max(1, history.intervalSeconds || 15);
          const p = history.points;
          // The server's clock, not this machine's: the points are its.
          const now = history.time || Date.now() / 1000;
          graphs.replaceChildren(
            chart('CPU (cores)', p, [{ value: (q) => q.cpuCores, color: '#2f5bd3' }], (v) => v.toFixed(3), now),
            chart('Memory', p, [{ value: (q) => q.memoryBytes, color: '#7a5af8' }], bytes, now),
            chart('Requests per second (5xx)', p, [
              { value: (q) => q.requestsPerSecond, color: '#12805c' },
              { value: (q) => q.errorsPerSecond, color: '#c01048' },
            ], (v) => v.toFixed(1), now),
            chart('Latency p50 / p95', p, [
              { value: (q) => q.latencyP50Seconds, color: '#2f5bd3' },
              { value: (q) => q.latencyP95Seconds, color: '#b54708' },
            ], seconds, now));
        } else {
          graphs.replaceChildren(h('p', { class: 'muted' }, await statusMessage(response)));
        }
      } catch (e) {
        graphs.replaceChildren(h('p', { class: 'muted' }, e.message));
      }
      await sleep(wait * 1000);
    }
  }
  pollUsage();

  return {
    render() {
      const w = cluster.workloads.get(`${ns}/${name}`);
      if (!w) {
        rolloutCard.replaceChildren(h('p', { class: 'muted' }, `No workload ${name} in namespace ${ns} (yet).`));
        return;
      }
      const r = rollout(w, instancesOf(ns, name));
      const s = w.status || {};
      const module = (w.spec.module || {}).source || (w.spec.module || {}).sha256 || '';
      rolloutCard.replaceChildren(
        h('p', {}, h('b', { class: r.level, 'data-rollout': r.state }, r.state), ' ', bar(r.share, 1, r.text, r.level)),
        h('p', { class: 'muted' },
          `module ${module} · ${s.readyReplicas || 0}/${desired(w)} ready · revision ${s.updateRevision || 0}`,
          s.currentRevision && s.currentRevision !== s.updateRevision ? ` (from ${s.currentRevision})` : ''),
        table(['Condition', 'Status', 'Reason', 'Message'], (s.conditions || []).map((c) =>
          h('tr', {}, h('td', {}, c.type), h('td', {}, c.status), h('td', {}, c.reason),
            h('td', { class: 'message' }, c.message))), ''));

      const instances = instancesOf(ns, name).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
      instancesCard.replaceChildren(table(
        ['Name', 'Phase', 'Ready', 'Node', 'Restarts', 'Revision', 'Last termination', ''],
        instances.map((i) => {
          const st = i.status || {};
          const instance = i.metadata.name;
          const hash = (i.metadata.labels || {})['flotilla.dev/template-hash'] || '';
          return h('tr', { 'data-instance': instance },
            h('td', {}, instance),
            h('td', { class: `phase ${phaseClass(st.phase)}` }, st.phase || 'Pending'),
            h('td', {}, st.ready ? 'yes' : 'no'),
            h('td', {}, i.spec.nodeName || '—'),
            h('td', { class: 'restarts' }, st.restarts || 0),
            h('td', {}, hash),
            h('td', { class: 'message termination' }, terminationText(st.lastTermination) || st.message || ''),
            h('td', {}, h('button', {
              type: 'button',
              class: following && following.instance === instance ? 'selected' : '',
              onclick: () => follow(instance),
            }, 'Log')));
        }), 'No instances.'));

      const revisions = [...cluster.revisions.values()]
        .filter((v) => v.metadata.namespace === ns && v.spec.workload === name)
        .sort((a, b) => b.spec.revision - a.spec.revision);
      revisionsCard.replaceChildren(table(['Revision', 'Template', 'Change', 'Created'],
        revisions.map((v) => h('tr', {},
          h('td', {}, v.spec.revision, v.spec.revision === s.updateRevision ? ' (current)' : ''),
          h('td', {}, v.spec.templateHash),
          h('td', {}, v.spec.change || (v.spec.revision === 1 ? 'first' : '')),
          h('td', {}, age(v.metadata.creationTimestamp)))), 'No revisions yet.'));

      eventsCard.replaceChildren(eventsTable(eventsAbout((e) => {
        const o = e.spec.involvedObject || {};
        return o.namespace === ns && ((o.kind === 'Workload' && o.name === name)
          || (o.kind === 'Instance' && workloadOfInstance(ns, o.name) === name));
      })));
    },
    stop() {
      stopped = true;
      if (following) following.controller.abort();
    },
  };
}

// ---- routes and signing in -----------------------------------------------

function route() {
  if (page) page.stop();
  page = null;
  if (!token) return;
  let parts = [];
  try {
    parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  } catch {
    parts = []; // a hash that is not percent-encoded well: the fleet
  }
  page = parts[0] === 'workloads' && parts.length === 3
    ? workloadPage(parts[1], parts[2])
    : fleetPage();
  page.render();
}

function showSignIn(message) {
  document.getElementById('sign-in').hidden = false;
  document.getElementById('sign-out').hidden = true;
  document.getElementById('page').replaceChildren();
  document.getElementById('connection').textContent = '';
  document.getElementById('sign-in-error').textContent = message || '';
}

function signOut(message) {
  if (page) page.stop();
  page = null;
  stopWatches();
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  showSignIn(message);
}

function signedIn() {
  document.getElementById('sign-in').hidden = true;
  document.getElementById('sign-out').hidden = false;
  startWatches();
  route();
}

async function signIn(event) {
  event.preventDefault();
  const input = document.getElementById('token');
  token = input.value.trim();
  // Any token that may list workloads somewhere signs in (a namespaced
  // one sees its namespaces only).
  const response = await api(`${API}/workloads?limit=1`).catch((e) => ({ ok: false, status: 0, statusText: e.message, json: async () => ({}) }));
  if (!response.ok) {
    const why = await statusMessage(response);
    token = null;
    showSignIn(`Signing in failed (${response.status || 'no answer'}): ${why}`);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  input.value = '';
  signedIn();
}

document.getElementById('sign-in').addEventListener('submit', signIn);
document.getElementById('sign-out').addEventListener('click', () => signOut(''));
window.addEventListener('hashchange', route);
setInterval(queueRender, 5000); // ages move on
if (token) signedIn(); else showSignIn('');
