#!/usr/bin/env python3
"""Rollout benchmark (numbers in BENCHMARKS.md): one `flotilla server` and three
`flotilla agent` processes on loopback.

  1. daemons: a rolling update of N `sleeper` replicas spread over the three
     agents, at the default 25%/25% and minReadySeconds 0: time from the PATCH
     of the template until the workload's status says every replica is
     updated and available (observedGeneration current); ROUNDS rollouts,
     median;
  2. http: a rolling update of M `http-hello` replicas while `wrk` keeps
     8 connections busy through one agent's ingress: the rollout's time as
     above, the requests served during the run and how many failed (non-2xx
     and socket errors, as wrk counts them); ROUNDS rollouts, median.

usage: benches/rollout.py [N_DAEMONS] [M_HTTP] [ROUNDS]
       (after scripts/build-sample-modules.sh and cargo build --release; needs wrk)
"""
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet import agent  # noqa: E402
from serve import HELLO, http_workload  # noqa: E402
from up import SLEEPER, Up, workload  # noqa: E402

WORKLOADS = "/apis/flotilla.dev/v1/namespaces/default/workloads"


def upload(server, path):
    module = open(path, "rb").read()
    digest = hashlib.sha256(module).hexdigest()
    server.request("PUT", f"/blobs/sha256/{digest}", raw=module)
    return digest


def rolled_out(server, name, replicas, limit=600):
    """Seconds until `name`'s status says its template is rolled out."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        w = json.loads(server.request("GET", f"{WORKLOADS}/{name}"))
        s = w.get("status", {})
        if (s.get("observedGeneration") == w["metadata"]["generation"]
                and s.get("updatedReplicas") == replicas and s.get("replicas") == replicas
                and s.get("availableReplicas") == replicas):
            return time.perf_counter() - start
        time.sleep(0.05)
    raise SystemExit(f"{name} did not roll out in {limit} s: {s}")


def patch(server, name, spec):
    server.request("PATCH", f"{WORKLOADS}/{name}", {"spec": spec},
                   content_type="application/merge-patch+json")


def daemons(server, n, rounds):
    digest = upload(server, SLEEPER)
    spec = workload("daemons", digest, n, ["600000"])
    spec["spec"]["resources"] = {"requests": {"memory": "8Mi", "cpu": "10m"}}
    spec["spec"]["placement"] = {"strategy": "spread"}
    server.request("POST", WORKLOADS, spec)
    rolled_out(server, "daemons", n)
    times = []
    for r in range(rounds):
        patch(server, "daemons", {"args": [str(600001 + r)]})
        times.append(rolled_out(server, "daemons", n))
    print(f"{n} daemon replicas over 3 agents, 25%/25%: rolling update "
          f"median {statistics.median(times):.2f} s (rounds: {', '.join(f'{t:.2f}' for t in times)})")
    server.request("DELETE", f"{WORKLOADS}/daemons")


def ingress_port(server, node):
    for _ in range(100):
        n = json.loads(server.request("GET", f"/apis/flotilla.dev/v1/nodes/{node}"))
        address = n.get("status", {}).get("ingressAddress")
        if address:
            return int(address.rsplit(":", 1)[1])
        time.sleep(0.1)
    raise SystemExit(f"{node} publishes no ingress")


def http(server, m, rounds):
    digest = upload(server, HELLO)
    spec = http_workload("web", digest, "web.local", replicas=m)
    spec["spec"]["placement"] = {"strategy": "spread"}
    spec["spec"]["resources"] = {"requests": {"memory": "10Mi"}}
    server.request("POST", WORKLOADS, spec)
    rolled_out(server, "web", m)
    port = ingress_port(server, "edge-a")
    times, rates, failed = [], [], []
    for r in range(rounds):
        load = subprocess.Popen(
            ["wrk", "-t2", "-c8", "-d600s", "-H", "Host: web.local", f"http://127.0.0.1:{port}/"],
            stdout=subprocess.PIPE, text=True)
        time.sleep(2)
        patch(server, "web", {"env": [{"name": "ROUND", "value": str(r)}]})
        times.append(rolled_out(server, "web", m))
        time.sleep(1)
        # wrk prints its totals when interrupted.
        load.send_signal(2)
        out = load.communicate()[0]
        total = int(re.search(r"(\d+) requests in", out).group(1))
        seconds = float(re.search(r"requests in ([\d.]+)s", out).group(1))
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        bad = (int(non2xx.group(1)) if non2xx else 0) + (
            sum(int(g) for g in socket_errors.groups()) if socket_errors else 0)
        rates.append(total / seconds)
        failed.append((bad, total))
    print(f"{m} http replicas over 3 agents under load (wrk, 8 connections): rolling update "
          f"median {statistics.median(times):.2f} s (rounds: {', '.join(f'{t:.2f}' for t in times)}); "
          f"load median {statistics.median(rates):.0f} req/s; failed requests per round: "
          f"{', '.join(f'{b} of {t}' for b, t in failed)}")


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    m = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    server = Up(max_instances=0, server=True)
    join = os.path.join(server.dir, "data/join-token")
    agents = [agent(server, name, join) for name in ("edge-a", "edge-b", "edge-c")]
    try:
        while len(json.loads(server.request("GET", "/apis/flotilla.dev/v1/nodes"))["items"]) < 3:
            time.sleep(0.1)
        daemons(server, n, rounds)
        http(server, m, rounds)
    finally:
        for a in agents:
            a.kill()
        server.stop()


if __name__ == "__main__":
    main()
