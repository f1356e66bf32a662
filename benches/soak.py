#!/usr/bin/env python3
"""Soak (issue 10; results in RELIABILITY.md): `flotilla up` with N instances
churned for DURATION — every cycle deletes and re-creates a workload of N/2
sleepers and scales another between N/4 and N/2, so instances keep being
created, bound, started, stopped and collected. Every SAMPLE seconds it
records the process's RSS, open file descriptors, threads and the store's
size on disk (store.db + WAL); the curve is printed as CSV, then the first
and last quarters compared: flat means no leak.

usage: benches/soak.py [DURATION_S=3600] [N=1000] [SAMPLE_S=30]
needs: cargo build --release, scripts/build-sample-modules.sh
"""
import hashlib
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from up import SLEEPER, Up, workload  # noqa: E402

WORKLOADS = "/apis/flotilla.dev/v1/namespaces/default/workloads"


def sample(up, started):
    fds = len(os.listdir(f"/proc/{up.proc.pid}/fd"))
    threads = len(os.listdir(f"/proc/{up.proc.pid}/task"))
    data = os.path.join(up.dir, "data")
    store = sum(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data) if f.startswith("store.db"))
    running = sum(1 for i in json.loads(up.request("GET", "/apis/flotilla.dev/v1/instances"))["items"]
                  if i.get("status", {}).get("phase") == "Running")
    return (time.time() - started, up.rss_kib() / 1024, fds, threads, store / 1e6, running)


def main():
    duration = float(sys.argv[1]) if len(sys.argv) > 1 else 3600
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    every = float(sys.argv[3]) if len(sys.argv) > 3 else 30
    up = Up(max_instances=n + 100)
    module = open(SLEEPER, "rb").read()
    digest = hashlib.sha256(module).hexdigest()
    up.request("PUT", f"/blobs/sha256/{digest}", raw=module)
    up.request("POST", WORKLOADS, workload("steady", digest, n // 4, ["60000"]))
    started = time.time()
    samples, cycle, next_sample = [], 0, 0.0
    print("seconds,rss_mib,fds,threads,store_mb,running", flush=True)
    try:
        while time.time() - started < duration:
            cycle += 1
            try:
                up.request("DELETE", f"{WORKLOADS}/churn")
            except Exception:
                pass
            time.sleep(2)
            up.request("POST", WORKLOADS, workload("churn", digest, n // 2, ["60000"]))
            replicas = n // 2 if cycle % 2 else n // 4
            up.request("PATCH", f"{WORKLOADS}/steady", raw=json.dumps({"spec": {"replicas": replicas}}).encode(),
                       content_type="application/merge-patch+json")
            time.sleep(8)
            if time.time() - started >= next_sample:
                s = sample(up, started)
                samples.append(s)
                print(",".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in s), flush=True)
                next_sample += every
        quarter = max(1, len(samples) // 4)
        first, last = samples[:quarter], samples[-quarter:]
        for i, name in [(1, "RSS MiB"), (2, "fds"), (3, "threads"), (4, "store MB")]:
            a, b = statistics.median(x[i] for x in first), statistics.median(x[i] for x in last)
            print(f"{name}: first quarter {a:.1f}, last quarter {b:.1f} ({b / a if a else 0:.2f}×)")
        print(f"{cycle} churn cycles in {time.time() - started:.0f} s")
    finally:
        up.stop()


if __name__ == "__main__":
    main()
