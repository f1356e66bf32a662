#!/usr/bin/env python3
"""Many-node benchmark (numbers in BENCHMARKS.md): one `flotilla server` and three
`flotilla agent` processes on loopback.

  1. N sleeper replicas (spread over the three agents): time from the POST of the
     Workload until all N Instances are Running;
  2. node death: `kill -9` of one agent, time until all N are Running again on the
     other two (heartbeat grace 5 s, then eviction, re-placement, start).

usage: benches/fleet.py [N]   (after scripts/build-sample-modules.sh and cargo build --release)
"""
import hashlib
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from up import FLOTILLA, SLEEPER, Up, workload  # noqa: E402

INSTANCES = "/apis/flotilla.dev/v1/namespaces/default/instances"


def agent(server, name, join):
    return subprocess.Popen(
        [FLOTILLA, "agent", "--server", server.base, "--token-file", join, "--name", name,
         "--capacity-memory", "4Gi", "--capacity-cpu", "8000m", "--max-instances", "700",
         "--ingress", "127.0.0.1:0",
         "--data-dir", os.path.join(server.dir, name)],
        stderr=subprocess.DEVNULL)


def running(server, exclude_node=None):
    items = json.loads(server.request("GET", INSTANCES))["items"]
    return sum(1 for i in items
               if i.get("status", {}).get("phase") == "Running"
               and i["spec"].get("nodeName") not in (None, exclude_node))


def wait_all(server, n, exclude_node=None, limit=300):
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        if running(server, exclude_node) == n:
            return time.perf_counter() - start
        time.sleep(0.25)
    raise SystemExit(f"only {running(server, exclude_node)}/{n} Running after {limit} s")


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    server = Up(max_instances=0, server=True)
    join = os.path.join(server.dir, "data/join-token")
    agents = {name: agent(server, name, join) for name in ("edge-a", "edge-b", "edge-c")}
    while len(json.loads(server.request("GET", "/apis/flotilla.dev/v1/nodes"))["items"]) < 3:
        time.sleep(0.1)
    module = open(SLEEPER, "rb").read()
    digest = hashlib.sha256(module).hexdigest()
    server.request("PUT", f"/blobs/sha256/{digest}", raw=module)
    spec = workload("fleet", digest, n, ["600000"])
    spec["spec"]["resources"] = {"requests": {"memory": "8Mi", "cpu": "10m"}}
    spec["spec"]["placement"] = {"strategy": "spread"}
    server.request("POST", "/apis/flotilla.dev/v1/namespaces/default/workloads", spec)
    took = wait_all(server, n)
    items = json.loads(server.request("GET", INSTANCES))["items"]
    per_node = {name: sum(1 for i in items if i["spec"].get("nodeName") == name) for name in agents}
    print(f"{n} instances across 3 agents: all Running {took:.1f} s after the apply "
          f"({n / took:.0f} instances/s); per node {per_node}")

    victim = "edge-a"
    agents[victim].kill()
    agents[victim].wait()
    took = wait_all(server, n, exclude_node=victim)
    print(f"kill -9 of {victim} ({per_node[victim]} instances): all {n} Running on the other two "
          f"{took:.1f} s later (heartbeat grace 5 s included)")
    for a in agents.values():
        a.kill()
    server.stop()


if __name__ == "__main__":
    main()
