#!/usr/bin/env python3
"""`cluster` key-value backend under contention (numbers in BENCHMARKS.md): one
`flotilla server` and three `flotilla agent` processes on loopback.

Each round runs the `kv-bench` guest as `increment N` (N atomic increments of one
key of a `cluster` bucket through wasi:keyvalue), alternating:
  - one replica on one node (no contention), and
  - three replicas spread over the three nodes, all on the same key.
Each replica prints its per-call p50/p99 and its total time; throughput is the
increments of the round over the longest replica's total. The final value is
checked (every increment counted).

usage: benches/kv_cluster.py [N] [ROUNDS]   (after scripts/build-sample-modules.sh
       and cargo build --release)
"""
import hashlib
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet import agent  # noqa: E402
from up import ROOT, Up  # noqa: E402

MODULE = os.path.join(ROOT, "target/sample-modules/kv-bench.component.wasm")
NS = "/apis/flotilla.dev/v1/namespaces/default"


def run_round(server, digest, name, replicas, n):
    spec = {"apiVersion": "flotilla.dev/v1", "kind": "Workload",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"module": {"sha256": digest}, "replicas": replicas,
                     "args": ["increment", str(n), name],
                     "restartPolicy": {"policy": "Never"},
                     "placement": {"strategy": "spread"},
                     # Spread weighs what is requested: with nothing, all tie.
                     "resources": {"requests": {"memory": "64Mi", "cpu": "100m"}},
                     "grants": {"keyValue": [{"bucket": name, "backend": "cluster"}]}}}
    server.request("POST", f"{NS}/workloads", spec)
    deadline = time.time() + 600
    while time.time() < deadline:
        items = [i for i in json.loads(server.request("GET", f"{NS}/instances"))["items"]
                 if i["spec"]["workload"] == name]
        phases = [i.get("status", {}).get("phase") for i in items]
        if "Failed" in phases:
            raise SystemExit(f"{name}: a replica failed: {items}")
        if len(items) == replicas and all(p == "Succeeded" for p in phases):
            break
        time.sleep(0.2)
    else:
        raise SystemExit(f"{name}: not done in time")
    results = []
    for item in items:
        log = server.request("GET", f"{NS}/instances/{item['metadata']['name']}/log").decode()
        line = [l for l in log.splitlines() if l.startswith("increment ")][-1]
        p50, p99, _last, total = (int(x) for x in line.split()[1:])
        results.append((p50, p99, total))
    final = server.request("GET", f"/kv/v1/namespaces/default/buckets/{name}/keys/count").decode()
    assert final == str(replicas * n), f"{name}: {final} != {replicas * n}"
    nodes = {i["spec"]["nodeName"] for i in items}
    server.request("DELETE", f"{NS}/workloads/{name}")
    return {
        "p50": statistics.median(r[0] for r in results) / 1000,
        "p99": max(r[1] for r in results) / 1000,
        "per_s": replicas * n / (max(r[2] for r in results) / 1e9),
        "nodes": len(nodes),
    }


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    server = Up(max_instances=0, server=True)
    join = os.path.join(server.dir, "data/join-token")
    agents = [agent(server, name, join) for name in ("edge-a", "edge-b", "edge-c")]
    while len(json.loads(server.request("GET", "/apis/flotilla.dev/v1/nodes"))["items"]) < 3:
        time.sleep(0.1)
    try:
        bench(server, n, rounds)
    finally:
        for a in agents:
            a.kill()
        server.stop()


def bench(server, n, rounds):
    module = open(MODULE, "rb").read()
    digest = hashlib.sha256(module).hexdigest()
    server.request("PUT", f"/blobs/sha256/{digest}", raw=module)
    run_round(server, digest, "warm", 3, 200)
    single, triple = [], []
    for r in range(rounds):
        single.append(run_round(server, digest, f"one-{r}", 1, n))
        triple.append(run_round(server, digest, f"three-{r}", 3, n))
        assert triple[-1]["nodes"] == 3, triple[-1]
    med = lambda rs, k: statistics.median(x[k] for x in rs)
    print(f"{n} increments per replica, {rounds} rounds alternated; medians over rounds")
    print(f"{'':34} {'p50 µs':>8} {'p99 µs':>8} {'increments/s':>13}")
    for label, rs in (("1 replica, 1 node", single), ("3 replicas, 3 nodes, one key", triple)):
        print(f"{label:34} {med(rs, 'p50'):8.0f} {med(rs, 'p99'):8.0f} {med(rs, 'per_s'):13.0f}")
    print(f"contention: throughput x{med(triple, 'per_s') / med(single, 'per_s'):.2f} "
          f"with three writers; every increment counted")


if __name__ == "__main__":
    main()
