#!/usr/bin/env python3
"""Single-node benchmarks of `flotilla up` (numbers in BENCHMARKS.md).

  1. idle: RSS and CPU of `flotilla up` with no workloads, over 10 s;
  2. apply → Running: POST a 1-replica Workload, time until its Instance is
     Running as seen on a watch stream (the API round trip, the controller,
     the binder, the agent's watch, module load and instantiation, the status
     report); p50/p99 over N workloads;
  3. density: N idle `sleeper` replicas; agent RSS per instance.

usage: benches/up.py [N_APPLY] [N_DENSITY]   (after scripts/build-sample-modules.sh
       and cargo build --release)
"""
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import ssl
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOTILLA = os.path.join(ROOT, "target/release/flotilla")
SLEEPER = os.path.join(ROOT, "target/sample-modules/sleeper.wasm")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Up:
    """`flotilla up` (or, with server=True, `flotilla server` without an agent)."""

    def __init__(self, max_instances, server=False):
        self.dir = tempfile.mkdtemp()
        self.port = free_port()
        self.base = f"https://127.0.0.1:{self.port}"
        env = dict(os.environ, FLOTILLA_CONFIG=os.path.join(self.dir, "config.yaml"))
        self.ingress_port = free_port()
        command = ["server"] if server else ["up", "--name", "bench", "--max-instances", str(max_instances),
                                             "--ingress", f"127.0.0.1:{self.ingress_port}"]
        self.proc = subprocess.Popen(
            [FLOTILLA, *command, "--listen", f"127.0.0.1:{self.port}",
             "--data-dir", os.path.join(self.dir, "data")],
            env=env, stderr=subprocess.DEVNULL)
        # HTTPS only: trust the cluster CA the server creates on its first start.
        for _ in range(200):
            try:
                self.tls = ssl.create_default_context(cafile=os.path.join(self.dir, "data/pki/ca.crt"))
                urllib.request.urlopen(self.base + "/healthz", timeout=1, context=self.tls)
                break
            except (OSError, ssl.SSLError):
                time.sleep(0.05)
        self.token = open(os.path.join(self.dir, "data/admin-token")).read().strip()

    def request(self, method, path, body=None, raw=None, content_type="application/json"):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": content_type})
        with urllib.request.urlopen(req, context=self.tls) as r:
            return r.read()

    def rss_kib(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

    def cpu_seconds(self):
        fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def workload(name, digest, replicas, args):
    return {"apiVersion": "flotilla.dev/v1", "kind": "Workload",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"module": {"sha256": digest}, "replicas": replicas, "args": args}}


def rfc3339(text):
    """Seconds since the epoch of an RFC 3339 UTC timestamp (with or without a fraction)."""
    import datetime
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


RESTART_GAPS = []


def watch_running(up, seen):
    """Records when each workload first has a Running instance, and for each
    restart seen, the gap between the end of a run and the start of the next
    (lastTermination.finishedAt → startedAt, both stamped by the agent in ms)."""
    req = urllib.request.Request(up.base + "/apis/flotilla.dev/v1/instances?watch=true",
                                 headers={"Authorization": f"Bearer {up.token}"})
    with urllib.request.urlopen(req, context=up.tls) as stream:
        for line in stream:
            event = json.loads(line)
            obj = event["object"]
            status = obj.get("status", {})
            if status.get("phase") == "Running":
                seen.setdefault(obj["spec"]["workload"], []).append(time.perf_counter())
                ended = status.get("lastTermination", {}).get("finishedAt")
                if ended and status.get("startedAt") and obj["spec"]["workload"] == "crasher":
                    RESTART_GAPS.append(rfc3339(status["startedAt"]) - rfc3339(ended))


def main():
    n_apply = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    n_density = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    if len(sys.argv) > 3 and sys.argv[3] == "density-only":
        n_apply = 0
    module = open(SLEEPER, "rb").read()
    digest = hashlib.sha256(module).hexdigest()

    if n_apply == 0:
        return density(n_density, module, digest)
    up = Up(max_instances=n_density + 100)
    time.sleep(5)
    rss0, cpu0, t0 = up.rss_kib(), up.cpu_seconds(), time.time()
    time.sleep(10)
    idle_cpu = (up.cpu_seconds() - cpu0) / (time.time() - t0)
    print(f"idle: RSS {rss0 / 1024:.1f} MiB, CPU {idle_cpu * 100:.2f}% of a core")

    up.request("PUT", f"/blobs/sha256/{digest}", raw=module)
    seen = {}
    threading.Thread(target=watch_running, args=(up, seen), daemon=True).start()
    time.sleep(0.5)
    latencies = []
    for i in range(n_apply):
        name = f"w{i}"
        start = time.perf_counter()
        up.request("POST", "/apis/flotilla.dev/v1/namespaces/default/workloads",
                   workload(name, digest, 1, ["60000"]))
        while name not in seen:
            time.sleep(0.0005)
        latencies.append(seen[name][0] - start)
        up.request("DELETE", f"/apis/flotilla.dev/v1/namespaces/default/workloads/{name}")
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(len(latencies) * q))] * 1000
    print(f"apply -> Running over {n_apply}: p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, "
          f"min {latencies[0] * 1000:.1f} ms")
    time.sleep(3)

    # Crash → running again: a guest that exits at once, restarted after the
    # shortest backoff validation allows (10 ms: a zero backoff is a busy loop).
    crasher = open(os.path.join(ROOT, "target/sample-modules/exit-code.wasm"), "rb").read()
    crasher_digest = hashlib.sha256(crasher).hexdigest()
    up.request("PUT", f"/blobs/sha256/{crasher_digest}", raw=crasher)
    spec = workload("crasher", crasher_digest, 1, ["3"])
    spec["spec"]["restartPolicy"] = {"policy": "Always", "backoff": {"initial": "10ms", "max": "10ms"}}
    up.request("POST", "/apis/flotilla.dev/v1/namespaces/default/workloads", spec)
    while "crasher" not in seen:
        time.sleep(0.001)
    time.sleep(1)

    def restarts():
        items = json.loads(up.request("GET", "/apis/flotilla.dev/v1/namespaces/default/instances?labelSelector=flotilla.dev/workload=crasher"))["items"]
        return items[0]["status"]["restarts"]

    r0, t0 = restarts(), time.perf_counter()
    time.sleep(5)
    r1, t1 = restarts(), time.perf_counter()
    cycle = (t1 - t0) / max(r1 - r0, 1)
    print(f"crash -> running again (10 ms backoff): {r1 - r0} restarts in {t1 - t0:.1f} s = "
          f"{cycle * 1000:.2f} ms per crash-and-restart cycle (mean)")
    gaps = sorted(RESTART_GAPS)
    if gaps:
        q = lambda f: gaps[min(len(gaps) - 1, int(len(gaps) * f))] * 1000
        print(f"crash -> running again, end of run to next start, over {len(gaps)} restarts seen: "
              f"p50 {q(0.5):.1f} ms, p99 {q(0.99):.1f} ms, max {gaps[-1] * 1000:.1f} ms")
    up.stop()
    density(n_density, module, digest)


def density(n_density, module, digest):
    up = Up(max_instances=n_density + 100)
    time.sleep(3)
    base_rss = up.rss_kib()
    up.request("PUT", f"/blobs/sha256/{digest}", raw=module)
    up.request("POST", "/apis/flotilla.dev/v1/namespaces/default/workloads",
               workload("dense", digest, n_density, ["600000"]))
    start = time.perf_counter()
    while True:
        items = json.loads(up.request("GET", "/apis/flotilla.dev/v1/namespaces/default/instances"))["items"]
        running = sum(1 for i in items if i.get("status", {}).get("phase") == "Running")
        if running == n_density or time.perf_counter() - start > 300:
            break
        time.sleep(1)
    elapsed = time.perf_counter() - start
    time.sleep(3)
    rss = up.rss_kib()
    print(f"density: {running}/{n_density} Running after {elapsed:.1f} s; RSS {base_rss / 1024:.1f} -> "
          f"{rss / 1024:.1f} MiB = {(rss - base_rss) / max(running, 1):.0f} KiB per instance")
    up.stop()


if __name__ == "__main__":
    main()
