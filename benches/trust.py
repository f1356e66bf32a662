#!/usr/bin/env python3
"""What TLS everywhere costs (issue 9; numbers in BENCHMARKS.md), measured in
one run against the previous plain-HTTP build (BASELINE: a `flotilla` binary
of commit 3195980, the last without TLS), both warmed the same way and
alternated round by round:

  1. ingress req/s and p99 through node A's ingress to a hello replica on
     node B — forwarded node to node (now HTTP/2 over mutual TLS to B's
     node port; before, plain HTTP/1.1 to B's ingress) — with Debian's
     `wrk` at 10 connections; and, for reference, through B's own ingress
     (no hop);
  2. a new client connection per request to the API (`/healthz` with
     `Connection: close`): the TLS handshake's cost over plain TCP;
  3. apply → Running p50/p99 over N workloads (POST a Workload on a kept-alive
     connection, time until a watch shows its Instance Running), over TLS vs
     plain.

usage: BASELINE=/path/to/old/flotilla benches/trust.py [ROUNDS] [DURATION_S] [N_APPLY]
needs: cargo build --release, scripts/build-sample-modules.sh, wrk; the
       baseline built from 3195980 (git worktree add /tmp/baseline 3195980 &&
       CARGO_TARGET_DIR=/tmp/baseline-target cargo build --release -p flotilla)
"""
import hashlib
import json
import os
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from up import FLOTILLA, ROOT, SLEEPER, free_port, workload  # noqa: E402

HELLO = os.path.join(ROOT, "target/sample-modules/http-hello.component.wasm")
BASELINE = os.environ.get("BASELINE", "/tmp/baseline-target/release/flotilla")


class Fleet:
    """`flotilla server` and two agents (edge-a, edge-b) of one build."""

    def __init__(self, binary, tls):
        self.binary, self.tls = binary, tls
        self.dir = tempfile.mkdtemp()
        self.port = free_port()
        self.base = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        data = os.path.join(self.dir, "data")
        env = dict(os.environ, FLOTILLA_CONFIG=os.path.join(self.dir, "config.yaml"))
        self.procs = [subprocess.Popen(
            [binary, "server", "--listen", f"127.0.0.1:{self.port}", "--data-dir", data],
            env=env, stderr=subprocess.DEVNULL)]
        self.context = None
        for _ in range(400):
            try:
                if tls:
                    self.context = ssl.create_default_context(cafile=os.path.join(data, "pki/ca.crt"))
                urllib.request.urlopen(self.base + "/healthz", timeout=1, context=self.context)
                break
            except (OSError, ssl.SSLError):
                time.sleep(0.05)
        self.token = open(os.path.join(data, "admin-token")).read().strip()
        join = os.path.join(data, "join-token")
        self.ingress = {}
        for node in ("edge-a", "edge-b"):
            self.ingress[node] = free_port()
            credential = ["--token-file", join] if tls else ["--token", open(join).read().strip()]
            self.procs.append(subprocess.Popen(
                [binary, "agent", "--server", self.base, *credential, "--name", node,
                 "--ingress", f"127.0.0.1:{self.ingress[node]}", "--capacity-memory", "4Gi",
                 "--capacity-cpu", "2000m", "--data-dir", os.path.join(self.dir, node)],
                stderr=subprocess.DEVNULL))
        while len(self.get("/apis/flotilla.dev/v1/nodes")["items"]) < 2:
            time.sleep(0.1)

    def request(self, method, path, body=None, raw=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, context=self.context) as r:
            return r.read()

    def kept_alive(self):
        """One connection for many requests: what a controller or a
        long-lived client holds (the handshake is measured on its own)."""
        import http.client
        if self.tls:
            return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context)
        return http.client.HTTPConnection("127.0.0.1", self.port)

    def get(self, path):
        return json.loads(self.request("GET", path))

    def deploy_hello(self):
        module = open(HELLO, "rb").read()
        digest = hashlib.sha256(module).hexdigest()
        self.request("PUT", f"/blobs/sha256/{digest}", raw=module)
        self.request("POST", "/apis/flotilla.dev/v1/namespaces/default/workloads", {
            "apiVersion": "flotilla.dev/v1", "kind": "Workload",
            "metadata": {"name": "hello", "namespace": "default"},
            "spec": {"module": {"sha256": digest}, "execution": "http", "replicas": 1,
                     "maxConcurrency": 1000, "routes": [{"host": "hello.local", "pathPrefix": "/"}],
                     "nodeSelector": {"flotilla.dev/hostname": "edge-b"}}})
        for _ in range(600):
            if wrk_once(self.ingress["edge-a"]) and wrk_once(self.ingress["edge-b"]):
                return
            time.sleep(0.1)
        raise SystemExit(f"{self.binary}: hello never answered through edge-a")

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()


def wrk_once(port):
    out = subprocess.run(["curl", "-s", "-m", "2", "-H", "Host: hello.local", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True)
    return "hello from flotilla" in out.stdout


def wrk(url, duration, connections, headers):
    args = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency"]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return rps, float(p99.group(1)) * scale


def apply_to_running(fleet, n):
    module = open(SLEEPER, "rb").read()
    digest = hashlib.sha256(module).hexdigest()
    try:
        fleet.request("HEAD", f"/blobs/sha256/{digest}")
    except urllib.error.HTTPError:
        fleet.request("PUT", f"/blobs/sha256/{digest}", raw=module)
    seen = {}

    def watch():
        req = urllib.request.Request(fleet.base + "/apis/flotilla.dev/v1/instances?watch=true",
                                     headers={"Authorization": f"Bearer {fleet.token}"})
        with urllib.request.urlopen(req, context=fleet.context) as stream:
            for line in stream:
                obj = json.loads(line)["object"]
                if obj.get("status", {}).get("phase") == "Running":
                    seen.setdefault(obj["spec"]["workload"], time.perf_counter())

    threading.Thread(target=watch, daemon=True).start()
    time.sleep(0.5)
    latencies = []
    conn = fleet.kept_alive()
    headers = {"Authorization": f"Bearer {fleet.token}", "Content-Type": "application/json"}

    def call(method, path, body=None):
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = conn.getresponse()
        response.read()
        assert response.status < 300, response.status

    call("GET", "/healthz")  # the connection is open before the clock starts
    for i in range(n):
        name = f"w{i}"
        spec = workload(name, digest, 1, ["60000"])
        spec["spec"]["nodeSelector"] = {"flotilla.dev/hostname": "edge-a"}
        start = time.perf_counter()
        call("POST", "/apis/flotilla.dev/v1/namespaces/default/workloads", spec)
        while name not in seen:
            time.sleep(0.0005)
        latencies.append((seen[name] - start) * 1000)
        call("DELETE", f"/apis/flotilla.dev/v1/namespaces/default/workloads/{name}")
    conn.close()
    return latencies


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    duration = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    n_apply = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    if not os.path.exists(BASELINE):
        raise SystemExit(f"no baseline binary at {BASELINE}: see the usage")
    fleets = {"tls": Fleet(FLOTILLA, True), "plain": Fleet(BASELINE, False)}
    try:
        for fleet in fleets.values():
            fleet.deploy_hello()
        results = {k: {"hop": [], "hop_p99": [], "local": [], "local_p99": [], "conn": [], "conn_p99": []}
                   for k in fleets}
        host = ["Host: hello.local"]
        for name, fleet in fleets.items():  # warm both the same way
            wrk(f"http://127.0.0.1:{fleet.ingress['edge-a']}/", 2, 10, host)
            wrk(f"{fleet.base}/healthz", 2, 4, ["Connection: close"])
        for r in range(rounds):
            order = list(fleets.items()) if r % 2 == 0 else list(reversed(fleets.items()))
            for name, fleet in order:
                rps, p99 = wrk(f"http://127.0.0.1:{fleet.ingress['edge-a']}/", duration, 10, host)
                results[name]["hop"].append(rps)
                results[name]["hop_p99"].append(p99)
                rps, p99 = wrk(f"http://127.0.0.1:{fleet.ingress['edge-b']}/", duration, 10, host)
                results[name]["local"].append(rps)
                results[name]["local_p99"].append(p99)
                rps, p99 = wrk(f"{fleet.base}/healthz", duration, 4, ["Connection: close"])
                results[name]["conn"].append(rps)
                results[name]["conn_p99"].append(p99)
        med = {k: {m: statistics.median(v) for m, v in res.items()} for k, res in results.items()}
        for what, label in [("hop", "through edge-a, forwarded to edge-b"),
                            ("local", "through edge-b (no hop)"),
                            ("conn", "API, a new connection per request")]:
            t, p = med["tls"], med["plain"]
            print(f"{label}: TLS {t[what]:.0f} req/s (p99 {t[what + '_p99']:.2f} ms), "
                  f"plain {p[what]:.0f} req/s (p99 {p[what + '_p99']:.2f} ms): "
                  f"TLS/plain {t[what] / p[what]:.3f}")
        per_conn = {k: 4 / med[k]["conn"] * 1000 for k in med}
        print(f"new API connection + /healthz: TLS {per_conn['tls']:.2f} ms, plain {per_conn['plain']:.2f} ms "
              f"per request at 4 connections: the handshake costs ~{per_conn['tls'] - per_conn['plain']:.2f} ms")
        applied = {}
        for name in ("tls", "plain", "tls", "plain"):
            applied.setdefault(name, []).extend(apply_to_running(fleets[name], n_apply // 2))
        for name, lat in applied.items():
            lat.sort()
            print(f"apply -> Running ({name}) over {len(lat)}: p50 {statistics.median(lat):.1f} ms, "
                  f"p99 {lat[min(len(lat) - 1, int(len(lat) * 0.99))]:.1f} ms")
    finally:
        for fleet in fleets.values():
            fleet.stop()


if __name__ == "__main__":
    main()
