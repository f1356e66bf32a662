#!/usr/bin/env python3
"""API latency under a large, busy store (issue 10; results in RELIABILITY.md).

`flotilla server` (no agent) holds N instances, bound to ten simulated nodes
that heartbeat every second. While status writes arrive at RATE per second
(an instance going ready / not ready, as agents report), a second client
reads a workload, an instance and a node in turn; the script reports p50 and
p99 of both. The controllers wake on every write, so what they cost per
write shows up here as API latency.

Given a second binary (BASELINE, e.g. a build of an earlier commit), both run
alternately in the same run, ROUNDS times each, and the medians are compared.

usage: benches/controllers.py [N=10000] [RATE=100] [SECONDS=30] [ROUNDS=2] [BASELINE]
needs: cargo build --release, scripts/build-sample-modules.sh
"""
import hashlib
import http.client
import json
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import up as up_module  # noqa: E402
from up import SLEEPER, Up, workload  # noqa: E402

V1 = "/apis/flotilla.dev/v1"
NODES = 10
WORKLOADS = 10


class Client:
    """One kept-alive HTTPS connection (urllib opens one per request)."""

    def __init__(self, up):
        self.up = up
        self.conn = http.client.HTTPSConnection("127.0.0.1", up.port, context=up.tls, timeout=30)

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        started = time.perf_counter()
        self.conn.request(method, path, body=data, headers={
            "Authorization": f"Bearer {self.up.token}", "Content-Type": "application/json"})
        response = self.conn.getresponse()
        payload = response.read()
        took = time.perf_counter() - started
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {payload[:300]!r}")
        return took, payload


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + f".{time.time_ns() % 10**9:09d}"


def heartbeat(up, stop):
    client = Client(up)
    while not stop.is_set():
        for i in range(NODES):
            status = {"capacityMemoryBytes": 1 << 40, "capacityCpuMillis": 10**7, "capacityInstances": 100000,
                      "ready": True, "lastHeartbeat": now()}
            client.call("PUT", f"{V1}/nodes/sim-{i}/status",
                        {"apiVersion": "flotilla.dev/v1", "kind": "Node", "metadata": {"name": f"sim-{i}"},
                         "status": status})
        stop.wait(1)


def bound(up):
    items = json.loads(up.request("GET", f"{V1}/instances"))["items"]
    return [i for i in items if i["spec"].get("nodeName")]


def round_(binary, n, rate, seconds):
    up_module.FLOTILLA = binary
    up = Up(max_instances=0, server=True)
    stop = threading.Event()
    try:
        module = open(SLEEPER, "rb").read()
        digest = hashlib.sha256(module).hexdigest()
        up.request("PUT", f"/blobs/sha256/{digest}", raw=module)
        for i in range(NODES):
            up.request("POST", f"{V1}/nodes", {"apiVersion": "flotilla.dev/v1", "kind": "Node",
                                              "metadata": {"name": f"sim-{i}"}, "spec": {}})
        beats = threading.Thread(target=heartbeat, args=(up, stop), daemon=True)
        beats.start()
        started = time.time()
        for w in range(WORKLOADS):
            spec = workload(f"w{w}", digest, n // WORKLOADS, ["60000"])
            spec["spec"]["resources"] = {"limits": {"memory": "1Mi", "cpu": "1m"}}
            up.request("POST", f"{V1}/namespaces/default/workloads", spec)
        while len(instances := bound(up)) < n:
            time.sleep(1)
        placed = time.time() - started
        writes, reads = [], []

        def write():
            client = Client(up)
            period, k = 1 / rate, 0
            start = time.perf_counter()
            while not stop.is_set():
                target = instances[k % len(instances)]
                meta = target["metadata"]
                status = {"phase": "Running", "ready": (k // len(instances)) % 2 == 0, "startedAt": now()}
                body = {"apiVersion": "flotilla.dev/v1", "kind": "Instance",
                        "metadata": {"name": meta["name"], "namespace": "default"}, "status": status}
                took, _ = client.call("PUT", f"{V1}/namespaces/default/instances/{meta['name']}/status", body)
                writes.append(took)
                k += 1
                delay = start + k * period - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)

        def read():
            client = Client(up)
            paths = [f"{V1}/namespaces/default/workloads/w0",
                     f"{V1}/namespaces/default/instances/{instances[0]['metadata']['name']}",
                     f"{V1}/nodes/sim-0"]
            k = 0
            while not stop.is_set():
                took, _ = client.call("GET", paths[k % len(paths)])
                reads.append(took)
                k += 1
                time.sleep(0.02)

        threads = [threading.Thread(target=f, daemon=True) for f in (write, read)]
        cpu_before = up.cpu_seconds()
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join()
        cpu = (up.cpu_seconds() - cpu_before) / seconds

        def q(values, p):
            return statistics.quantiles(values, n=100)[p - 1] * 1000

        return {"placed_s": placed, "writes_per_s": len(writes) / seconds,
                "read_p50": q(reads, 50), "read_p99": q(reads, 99),
                "write_p50": q(writes, 50), "write_p99": q(writes, 99), "server_cores": cpu}
    finally:
        stop.set()
        up.stop()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 100
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 30
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    binaries = {"flotilla": up_module.FLOTILLA}
    if len(sys.argv) > 5:
        binaries["baseline"] = sys.argv[5]
    results = {name: [] for name in binaries}
    for r in range(rounds):
        for name, binary in binaries.items():
            result = round_(binary, n, rate, seconds)
            results[name].append(result)
            print(f"round {r + 1} {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in result.items()), flush=True)
    for name, rs in results.items():
        print(f"{name} (median of {len(rs)}): " + ", ".join(
            f"{k} {statistics.median(r[k] for r in rs):.1f}" for k in rs[0]))


if __name__ == "__main__":
    main()
