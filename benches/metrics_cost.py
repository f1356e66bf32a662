#!/usr/bin/env python3
"""What metrics collection costs a node with N instances (numbers in BENCHMARKS.md).

`flotilla up` (control plane and agent in one process) runs N idle `sleeper`
replicas. Then, alternating, windows of W seconds:
  - quiet: nobody reads metrics;
  - scraped: the node's metrics page (N instances' series, read from the node port
    through the API, as Prometheus would) is fetched every 5 s;
and the process's CPU (seconds per second) and RSS are measured over each window.
The scrape's own latency and page size are printed too.

usage: benches/metrics_cost.py [N] [ROUNDS] [WINDOW_S]   (after
       scripts/build-sample-modules.sh and cargo build --release)
"""
import hashlib
import json
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from up import SLEEPER, Up, workload  # noqa: E402

NODE_METRICS = "/apis/flotilla.dev/v1/nodes/bench/metrics"


def window(up, seconds, scrape):
    """CPU s/s and RSS (MiB) of the process over `seconds`, scraping every 5 s if asked."""
    latencies, sizes = [], []
    stop = threading.Event()

    def scraper():
        while not stop.is_set():
            started = time.perf_counter()
            page = up.request("GET", NODE_METRICS)
            latencies.append(time.perf_counter() - started)
            sizes.append(len(page))
            stop.wait(5)

    thread = threading.Thread(target=scraper, daemon=True) if scrape else None
    cpu0, t0 = up.cpu_seconds(), time.time()
    if thread:
        thread.start()
    time.sleep(seconds)
    stop.set()
    if thread:
        thread.join()
    cpu = (up.cpu_seconds() - cpu0) / (time.time() - t0)
    return cpu, up.rss_kib() / 1024, latencies, sizes


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    seconds = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    module = open(SLEEPER, "rb").read()
    digest = hashlib.sha256(module).hexdigest()
    up = Up(max_instances=n + 100)
    try:
        up.request("PUT", f"/blobs/sha256/{digest}", raw=module)
        up.request("POST", "/apis/flotilla.dev/v1/namespaces/default/workloads",
                   workload("idle", digest, n, ["6000000"]))
        deadline = time.time() + 300
        while time.time() < deadline:
            items = json.loads(up.request("GET", "/apis/flotilla.dev/v1/namespaces/default/instances"))["items"]
            if sum(1 for i in items if i.get("status", {}).get("phase") == "Running") == n:
                break
            time.sleep(1)
        else:
            raise SystemExit("the instances did not all run")
        window(up, 10, scrape=True)  # warm-up of both paths
        quiet, scraped, latencies, sizes = [], [], [], []
        for _ in range(rounds):
            cpu, rss, _, _ = window(up, seconds, scrape=False)
            quiet.append((cpu, rss))
            cpu, rss, lat, size = window(up, seconds, scrape=True)
            scraped.append((cpu, rss))
            latencies += lat
            sizes += size
        med = lambda xs, k: statistics.median(x[k] for x in xs)
        print(f"{n} idle instances, {rounds} rounds of {seconds} s alternated; medians")
        print(f"{'':28} {'CPU (% of a core)':>18} {'RSS (MiB)':>10}")
        print(f"{'not scraped':28} {med(quiet, 0) * 100:18.2f} {med(quiet, 1):10.1f}")
        print(f"{'scraped every 5 s':28} {med(scraped, 0) * 100:18.2f} {med(scraped, 1):10.1f}")
        print(f"scrape: {statistics.median(latencies) * 1000:.1f} ms median "
              f"(max {max(latencies) * 1000:.1f} ms), page {statistics.median(sizes) / 1024:.0f} KiB")
    finally:
        up.stop()


if __name__ == "__main__":
    main()
