#!/usr/bin/env python3
"""SQLite vs etcd as the store (numbers in BENCHMARKS.md), same run, same
shape: `flotilla server` and one `flotilla agent` on loopback, once on the
SQLite file and once on three etcd members (Debian's etcd-server) on
loopback. Rounds alternate between the two, both warmed the same way.

  1. API create and update (a Config, over one kept-alive HTTPS connection):
     p50/p99 of the round trip;
  2. watch-event delivery: a watch open on Configs, then a create; time
     from sending the create until its ADDED event is read on the watch;
  3. apply -> Running: POST a 1-replica Workload, time until its Instance is
     Running on a watch stream;
  4. leader failover (etcd only, three servers sharing the members):
     kill -9 of the leading server -> the first write made by the new
     leader's controllers (an Instance created for a Workload posted, through
     a surviving server, right after the kill).

usage: benches/store.py [ROUNDS]   (after scripts/build-sample-modules.sh and
       cargo build --release)
"""
import hashlib
import http.client
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from up import FLOTILLA, SLEEPER, free_port  # noqa: E402

NS = "/apis/flotilla.dev/v1/namespaces/default"


class Etcd:
    def __init__(self, members=3):
        self.dir = tempfile.mkdtemp()
        self.members = [(f"m{i}", free_port(), free_port()) for i in range(members)]
        cluster = ",".join(f"{n}=http://127.0.0.1:{p}" for n, _, p in self.members)
        self.procs = []
        for name, client, peer in self.members:
            self.procs.append(subprocess.Popen(
                ["/usr/bin/etcd", "--name", name, "--data-dir", os.path.join(self.dir, name),
                 "--listen-client-urls", f"http://127.0.0.1:{client}",
                 "--advertise-client-urls", f"http://127.0.0.1:{client}",
                 "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                 "--initial-cluster", cluster, "--heartbeat-interval", "50",
                 "--election-timeout", "500"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.endpoints = ",".join(f"127.0.0.1:{c}" for _, c, _ in self.members)
        for _ in range(300):
            if subprocess.run(["etcdctl", "--endpoints", self.endpoints, "endpoint", "health"],
                              capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        raise SystemExit("etcd did not start")

    def leader_value(self, prefix):
        out = subprocess.run(["etcdctl", "--endpoints", self.endpoints, "get", f"/{prefix}/leader",
                              "--print-value-only"], capture_output=True, text=True).stdout
        return out.strip().split(" ")[0]

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Server:
    """`flotilla server` (store args given), sharing `first`'s pki if any."""

    def __init__(self, store_args, first=None, agent=True):
        self.dir = tempfile.mkdtemp()
        data = os.path.join(self.dir, "data")
        os.makedirs(data)
        if first:
            for name in ["pki", "admin-token", "join-token"]:
                subprocess.run(["cp", "-a", os.path.join(first.dir, "data", name), data], check=True)
        self.port = free_port()
        self.base = f"https://127.0.0.1:{self.port}"
        env = dict(os.environ, FLOTILLA_CONFIG=os.path.join(self.dir, "config.yaml"))
        self.proc = subprocess.Popen([FLOTILLA, "server", "--listen", f"127.0.0.1:{self.port}",
                                      "--data-dir", data, *store_args],
                                     env=env, stderr=subprocess.DEVNULL)
        self.tls = None
        for _ in range(300):
            try:
                self.tls = ssl.create_default_context(cafile=os.path.join(data, "pki/ca.crt"))
                self.conn().request("GET", "/healthz")
                break
            except (OSError, ssl.SSLError):
                time.sleep(0.05)
        self.token = open(os.path.join(data, "admin-token")).read().strip()
        self.agent = None
        if agent:
            self.agent = subprocess.Popen(
                [FLOTILLA, "agent", "--server", self.base, "--token-file",
                 os.path.join(data, "join-token"), "--name", "bench", "--ingress",
                 f"127.0.0.1:{free_port()}", "--data-dir", os.path.join(self.dir, "agent")],
                stderr=subprocess.DEVNULL)
            while not self.get(f"/apis/flotilla.dev/v1/nodes")["items"]:
                time.sleep(0.05)

    def conn(self):
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.tls, timeout=30)

    def call(self, conn, method, path, body=None):
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Authorization": f"Bearer {self.token}",
                              "Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:300]}")
        return json.loads(data) if data else None

    def get(self, path):
        return self.call(self.conn(), "GET", path)

    def upload(self, path):
        blob = open(path, "rb").read()
        digest = hashlib.sha256(blob).hexdigest()
        conn = self.conn()
        conn.request("PUT", f"/blobs/sha256/{digest}", body=blob,
                     headers={"Authorization": f"Bearer {self.token}"})
        conn.getresponse().read()
        return digest

    def stop(self):
        for p in [self.agent, self.proc]:
            if p:
                p.kill()
                p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def config(name):
    return {"apiVersion": "flotilla.dev/v1", "kind": "Config",
            "metadata": {"name": name, "namespace": "default"}, "data": {"k": "v"}}


def api_round(server, tag, n):
    conn = server.conn()
    creates, updates = [], []
    for i in range(n):
        name = f"{tag}-{i}"
        t = time.perf_counter()
        stored = server.call(conn, "POST", f"{NS}/configs", config(name))
        creates.append(time.perf_counter() - t)
        stored["data"]["k"] = "w"
        t = time.perf_counter()
        server.call(conn, "PUT", f"{NS}/configs/{name}", stored)
        updates.append(time.perf_counter() - t)
    return creates, updates


def watch_round(server, tag, n):
    """Time from sending a create to reading its ADDED event."""
    listed = server.get(f"{NS}/configs")
    rv = listed["metadata"]["resourceVersion"]
    stream = server.conn()
    stream.request("GET", f"{NS}/configs?watch=true&resourceVersion={rv}",
                   headers={"Authorization": f"Bearer {server.token}"})
    response = stream.getresponse()
    arrived = {}
    done = threading.Event()

    def read():
        while not done.is_set():
            try:
                line = response.readline()
            except OSError:  # closed, or idle past the socket timeout once done
                return
            if not line:
                return
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("type") == "ADDED":
                arrived[event["object"]["metadata"]["name"]] = time.perf_counter()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    conn = server.conn()
    samples = []
    for i in range(n):
        name = f"{tag}-w{i}"
        t = time.perf_counter()
        server.call(conn, "POST", f"{NS}/configs", config(name))
        while name not in arrived:
            time.sleep(0.0002)
        samples.append(arrived[name] - t)
    done.set()
    stream.close()
    return samples


def apply_round(server, digest, tag, n):
    samples = []
    conn = server.conn()
    for i in range(n):
        name = f"{tag}-a{i}"
        body = {"apiVersion": "flotilla.dev/v1", "kind": "Workload",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"module": {"sha256": digest}, "replicas": 1, "args": ["3600"],
                         "resources": {"requests": {"memory": "8Mi", "cpu": "1m"}}}}
        t = time.perf_counter()
        server.call(conn, "POST", f"{NS}/workloads", body)
        while True:
            items = server.call(conn, "GET", f"{NS}/instances?labelSelector=flotilla.dev/workload={name}")["items"]
            if any(i.get("status", {}).get("phase") == "Running" and i["spec"]["workload"] == name
                   for i in items):
                break
            time.sleep(0.002)
        samples.append(time.perf_counter() - t)
        server.call(conn, "DELETE", f"{NS}/workloads/{name}")
    return samples


def pct(samples, q):
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


def failover(etcd, rounds, digest_path):
    args = ["--store", f"etcd://{etcd.endpoints}/failover", "--leader-lease", "2s"]
    first = Server(args, agent=False)
    servers = [first, Server(args, first, agent=False), Server(args, first, agent=False)]
    digest = first.upload(digest_path)
    # A node, so that the controllers have somewhere to bind instances.
    node = subprocess.Popen(
        [FLOTILLA, "agent", "--server", ",".join(s.base for s in servers), "--token-file",
         os.path.join(first.dir, "data", "join-token"), "--name", "failover", "--ingress",
         f"127.0.0.1:{free_port()}", "--data-dir", os.path.join(first.dir, "agent")],
        stderr=subprocess.DEVNULL)
    times = []
    for r in range(rounds):
        while not etcd.leader_value("failover"):
            time.sleep(0.05)
        leading = etcd.leader_value("failover")
        victim = next(s for s in servers if s.base == leading)
        survivor = next(s for s in servers if s is not victim and s.proc.poll() is None)
        time.sleep(1)
        name = f"failover-{r}"
        conn = survivor.conn()
        t = time.perf_counter()
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        body = {"apiVersion": "flotilla.dev/v1", "kind": "Workload",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"module": {"sha256": digest}, "replicas": 1, "args": ["3600"],
                         "resources": {"requests": {"memory": "8Mi", "cpu": "1m"}}}}
        survivor.call(conn, "POST", f"{NS}/workloads", body)
        while not survivor.call(conn, "GET", f"{NS}/instances?labelSelector=flotilla.dev/workload={name}")["items"]:
            time.sleep(0.005)
        times.append(time.perf_counter() - t)
        # The killed server comes back (as a follower) for the next round.
        index = servers.index(victim)
        data = os.path.join(victim.dir, "data")
        env = dict(os.environ, FLOTILLA_CONFIG=os.path.join(victim.dir, "config.yaml"))
        victim.proc = subprocess.Popen([FLOTILLA, "server", "--listen", f"127.0.0.1:{victim.port}",
                                        "--data-dir", data, *args], env=env, stderr=subprocess.DEVNULL)
        servers[index] = victim
        time.sleep(1)
    node.kill()
    node.wait()
    for s in servers:
        s.stop()
    return times


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    etcd = Etcd(3)
    planes = {
        "sqlite": Server([]),
        "etcd": Server(["--store", f"etcd://{etcd.endpoints}/bench"]),
    }
    digests = {k: s.upload(SLEEPER) for k, s in planes.items()}
    results = {k: {"create": [], "update": [], "watch": [], "apply": []} for k in planes}
    # Warm-up, the same for both.
    for k, s in planes.items():
        api_round(s, f"warm-{k}", 20)
        watch_round(s, f"warm-{k}", 5)
        apply_round(s, digests[k], f"warm-{k}", 2)
    for r in range(rounds):
        order = list(planes) if r % 2 == 0 else list(reversed(planes))
        for k in order:
            s = planes[k]
            creates, updates = api_round(s, f"r{r}", 100)
            results[k]["create"] += creates
            results[k]["update"] += updates
            results[k]["watch"] += watch_round(s, f"r{r}", 30)
            results[k]["apply"] += apply_round(s, digests[k], f"r{r}", 5)
    print(f"{'':8} {'create p50/p99':>16} {'update p50/p99':>16} {'watch p50/p99':>16} {'apply->Running p50/p99':>24}")
    for k in planes:
        r = results[k]
        cols = [f"{pct(r[m], 0.5):.2f}/{pct(r[m], 0.99):.2f} ms" for m in ["create", "update", "watch", "apply"]]
        print(f"{k:8} {cols[0]:>16} {cols[1]:>16} {cols[2]:>16} {cols[3]:>24}")
    for m in ["create", "update", "watch", "apply"]:
        ratio = statistics.median(results["etcd"][m]) / statistics.median(results["sqlite"][m])
        print(f"etcd/sqlite median {m}: {ratio:.2f}x")
    for s in planes.values():
        s.stop()
    times = failover(etcd, max(3, rounds), SLEEPER)
    print("failover (kill -9 of the leader -> first write by the new leader's controllers): "
          f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms "
          f"over {len(times)} (lease TTL 2s)")
    etcd.stop()


if __name__ == "__main__":
    main()
