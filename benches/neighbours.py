#!/usr/bin/env python3
"""Hostile neighbours (issue 10; numbers in RELIABILITY.md): an http workload's
latency alone vs beside 50 spinners (CPU-bound, each limited to 100m), 50
memory hogs (grow to their 32Mi limit, die OOMKilled, restart) and 50
crash-loopers (exit 3 at once, restarted after 10 ms), all on one
`flotilla up` node. The neighbours are scaled to 0 and back between rounds,
so "alone" and "beside them" alternate in the same run; wrk at 10
connections, medians of ROUNDS rounds of DURATION seconds.

usage: benches/neighbours.py [ROUNDS] [DURATION_S]
needs: cargo build --release, scripts/build-sample-modules.sh, wrk
"""
import hashlib
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from trust import wrk  # noqa: E402
from up import ROOT, Up  # noqa: E402

MODULES = os.path.join(ROOT, "target/sample-modules")
WORKLOADS = "/apis/flotilla.dev/v1/namespaces/default/workloads"


def upload(up, name):
    module = open(os.path.join(MODULES, name), "rb").read()
    digest = hashlib.sha256(module).hexdigest()
    up.request("PUT", f"/blobs/sha256/{digest}", raw=module)
    return digest


def workload(name, digest, replicas, spec):
    body = {"apiVersion": "flotilla.dev/v1", "kind": "Workload",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"module": {"sha256": digest}, "replicas": replicas}}
    body["spec"].update(spec)
    return body


NEIGHBOURS = {
    "spinners": ("spinner.wasm", {"resources": {"limits": {"cpu": "100m"}}}),
    "hogs": ("hog.wasm", {"resources": {"limits": {"memory": "32Mi"}},
                          "restartPolicy": {"policy": "Always", "backoff": {"initial": "10ms", "max": "1s"}}}),
    "crashers": ("exit-code.wasm", {"args": ["3"],
                                    "restartPolicy": {"policy": "Always", "backoff": {"initial": "10ms", "max": "10ms"}}}),
}


# NEIGHBOURS=spinners,hogs to measure some kinds alone.
ONLY = [n for n in os.environ.get("NEIGHBOURS", "").split(",") if n]
if ONLY:
    NEIGHBOURS = {k: v for k, v in NEIGHBOURS.items() if k in ONLY}


def scale(up, replicas):
    for name in NEIGHBOURS:
        up.request("PATCH", f"{WORKLOADS}/{name}", raw=json.dumps({"spec": {"replicas": replicas}}).encode(),
                   content_type="application/merge-patch+json")


def running(up, name):
    items = json.loads(up.request("GET", f"/apis/flotilla.dev/v1/namespaces/default/instances?labelSelector=flotilla.dev/workload={name}"))["items"]
    return sum(1 for i in items if i.get("status", {}).get("phase") in ("Running",))


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    duration = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    up = Up(max_instances=400)
    try:
        ingress = up.ingress_port
        hello = upload(up, "http-hello.component.wasm")
        up.request("POST", WORKLOADS, workload("hello", hello, 1, {
            "execution": "http", "maxConcurrency": 1000,
            "routes": [{"host": "hello.local", "pathPrefix": "/"}]}))
        for name, (module, spec) in NEIGHBOURS.items():
            up.request("POST", WORKLOADS, workload(name, upload(up, module), 0, spec))
        url = f"http://127.0.0.1:{ingress}/"
        host = ["Host: hello.local"]
        for _ in range(200):
            try:
                wrk(url, 1, 1, host)
                break
            except Exception:
                time.sleep(0.2)
        results = {"alone": [], "beside": []}
        wrk(url, 2, 10, host)  # warm
        for r in range(rounds):
            for phase in (("alone", "beside") if r % 2 == 0 else ("beside", "alone")):
                scale(up, 50 if phase == "beside" else 0)
                if phase == "beside":
                    deadline = time.time() + 60
                    first = next(iter(NEIGHBOURS))
                    while first == "spinners" and running(up, first) < 50 and time.time() < deadline:
                        time.sleep(0.5)
                else:
                    time.sleep(2)
                time.sleep(2)
                rps, p99 = wrk(url, duration, 10, host)
                results[phase].append((rps, p99))
                print(f"round {r} {phase}: {rps:.0f} req/s, p99 {p99:.2f} ms", flush=True)
        med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
               for k, v in results.items()}
        print(f"alone: {med['alone'][0]:.0f} req/s, p99 {med['alone'][1]:.2f} ms")
        print(f"beside 50 each of {', '.join(NEIGHBOURS)}: {med['beside'][0]:.0f} req/s, "
              f"p99 {med['beside'][1]:.2f} ms")
        print(f"p99 beside ÷ alone: {med['beside'][1] / med['alone'][1]:.2f}× (goal ≤ 2×)")
    finally:
        up.stop()


if __name__ == "__main__":
    main()
