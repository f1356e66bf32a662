#!/usr/bin/env python3
"""Where deploy → first 200 OK goes: POSTs N http Workloads one at a time and,
from a watch on instances, records when each stage is visible — the POST's
answer, the Instance created (workload controller), bound (binder), Running
(agent) — and the first 200 from the ingress. Medians in ms from the POST.

usage: benches/deploy_trace.py [N]   (after scripts/build-sample-modules.sh and cargo build --release)
"""
import hashlib
import json
import os
import statistics
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve  # noqa: E402
from up import Up  # noqa: E402


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    module = open(serve.HELLO, "rb").read()
    digest = hashlib.sha256(module).hexdigest()
    up = Up(max_instances=200)
    up.request("PUT", f"/blobs/sha256/{digest}", raw=module)
    seen = {}

    def watch():
        req = urllib.request.Request(up.base + "/apis/flotilla.dev/v1/instances?watch=true",
                                     headers={"Authorization": f"Bearer {up.token}"})
        with urllib.request.urlopen(req, context=up.tls) as stream:
            for line in stream:
                t = time.perf_counter()
                obj = json.loads(line)["object"]
                workload = obj.get("spec", {}).get("workload")
                if not workload:
                    continue
                stages = seen.setdefault(workload, {})
                stages.setdefault("created", t)
                if obj["spec"].get("nodeName"):
                    stages.setdefault("bound", t)
                if obj.get("status", {}).get("phase") == "Running":
                    stages.setdefault("running", t)

    threading.Thread(target=watch, daemon=True).start()
    time.sleep(1)
    node = json.loads(up.request("GET", "/apis/flotilla.dev/v1/nodes/bench"))
    port = int(node["status"]["ingressAddress"].rsplit(":", 1)[1])
    rows = []
    poller = serve.Poller(port)
    for i in range(n):
        name = f"d{i}"
        start = time.perf_counter()
        up.request("POST", serve.WORKLOADS, serve.http_workload(name, digest, f"{name}.local"))
        posted = time.perf_counter()
        while poller.status(f"{name}.local") != 200:
            time.sleep(0.0002)
        answered = time.perf_counter()
        time.sleep(0.05)
        stages = seen.get(name, {})
        rows.append({"POST answered": posted, "Instance created": stages.get("created", start),
                     "bound": stages.get("bound", start), "Running": stages.get("running", start),
                     "first 200": answered, "start": start})
        up.request("DELETE", f"{serve.WORKLOADS}/{name}")
    for stage in ["POST answered", "Instance created", "bound", "Running", "first 200"]:
        ms = statistics.median((r[stage] - r["start"]) * 1000 for r in rows)
        print(f"{stage:>17}: {ms:.2f} ms")
    up.stop()


if __name__ == "__main__":
    main()
