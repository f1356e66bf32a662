#!/usr/bin/env python3
"""HTTP benchmark (numbers in BENCHMARKS.md), all on this machine in one run:

  1. req/s and p50/p99 latency of the same hello component (http-hello)
     behind `flotilla up`'s ingress vs `wasmtime serve -O pooling-allocator`
     (wasmtime-cli 48.0.8), and a plain hyper hello-world (no Wasm), with
     Debian's `wrk` at 10 and 100 connections; the three servers take turns,
     ROUNDS rounds of DURATION each, medians reported;
  2. deploy → first 200 OK: POST a Workload (module already uploaded and
     compiled) and poll the ingress until it answers 200; p50 over N — beside
     `runc run` of busybox echo (a container start without any network),
     the two alternated one for one after 5 uncounted warm-up runs each.
  Every server is warmed with 2 s of the same wrk load before its rounds.

usage: benches/serve.py [ROUNDS] [DURATION_S] [N_DEPLOY]
needs: scripts/build-sample-modules.sh, cargo build --release (incl. -p flotilla-benches),
       wrk (apt-get install wrk), runc + busybox-static, ~/.cargo/bin/wasmtime 48.0.8
"""
import hashlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from up import ROOT, Up, free_port  # noqa: E402

HELLO = os.path.join(ROOT, "target/sample-modules/http-hello.component.wasm")
WASMTIME = os.environ.get("WASMTIME", os.path.expanduser("~/.cargo/bin/wasmtime"))
HYPER = os.path.join(ROOT, "target/release/hyper-hello")
WORKLOADS = "/apis/flotilla.dev/v1/namespaces/default/workloads"


def wait_port(port):
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.025)
    raise SystemExit(f"nothing listens on {port}")


def http_workload(name, digest, host, replicas=1):
    return {"apiVersion": "flotilla.dev/v1", "kind": "Workload",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"module": {"sha256": digest}, "execution": "http", "replicas": replicas,
                     "maxConcurrency": 1000, "routes": [{"host": host, "pathPrefix": "/"}]}}


class Poller:
    """GETs over one kept-alive connection, as fast as answers come: a
    deploy is timed to the first 200, not to a polling interval."""

    def __init__(self, port):
        import http.client
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)

    def status(self, host):
        import http.client
        try:
            self.connection.request("GET", "/", headers={"Host": host})
            response = self.connection.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException):
            self.connection.close()
            return 0


def get(port, host):
    """One GET on a fresh connection: the status code (0 if none)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        head = s.recv(64)
        s.close()
        return int(head.split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def to_ms(text):
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(port, connections, seconds, host):
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Host: {host}",
         f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = to_ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{errors.group(1)} failed responses on port {port}:\n{out}")
    return rps, p50, p99


def throughput(rounds, seconds):
    module = open(HELLO, "rb").read()
    digest = hashlib.sha256(module).hexdigest()
    up = Up(max_instances=2000)
    ingress = json.loads(up.request("GET", "/apis/flotilla.dev/v1/nodes/bench"))["status"]["ingressAddress"]
    up.request("PUT", f"/blobs/sha256/{digest}", raw=module)
    up.request("POST", WORKLOADS, http_workload("hello", digest, "hello.local"))
    flotilla_port = int(ingress.rsplit(":", 1)[1])
    while get(flotilla_port, "hello.local") != 200:
        time.sleep(0.05)
    wasmtime_port, hyper_port = free_port(), free_port()
    servers = [
        # -Scli: http-hello reads wasi:cli/environment, which Flotilla
        # gives every handler.
        subprocess.Popen([WASMTIME, "serve", "-O", "pooling-allocator", "-S", "cli", "--addr",
                          f"127.0.0.1:{wasmtime_port}", HELLO], stderr=subprocess.DEVNULL),
        subprocess.Popen([HYPER, f"127.0.0.1:{hyper_port}"]),
    ]
    wait_port(wasmtime_port)
    wait_port(hyper_port)
    targets = [("flotilla ingress", flotilla_port), ("wasmtime serve", wasmtime_port),
               ("hyper, no Wasm", hyper_port)]
    for connections in (10, 100):
        results = {name: [] for name, _ in targets}
        # Every server warmed the same way, at this load, before it counts.
        for _, port in targets:
            wrk(port, connections, 2, "hello.local")
        for _ in range(rounds):
            for name, port in targets:
                results[name].append(wrk(port, connections, seconds, "hello.local"))
        base = results["wasmtime serve"]
        b_rps = statistics.median(r[0] for r in base)
        b_p99 = statistics.median(r[2] for r in base)
        print(f"\n{connections} connections ({rounds} rounds of {seconds} s, medians):")
        print(f"  {'server':<18} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  vs wasmtime serve")
        for name, _ in targets:
            rps = statistics.median(r[0] for r in results[name])
            p50 = statistics.median(r[1] for r in results[name])
            p99 = statistics.median(r[2] for r in results[name])
            print(f"  {name:<18} {rps:>9.0f} {p50:>8.2f} {p99:>8.2f}  "
                  f"req/s {rps / b_rps:.2f}x, p99 {p99 / b_p99:.2f}x")
    for s in servers:
        s.kill()
    return up, digest


class Runc:
    """`runc run` of busybox echo: a container start without any network."""

    def __init__(self):
        self.bundle = tempfile.mkdtemp()
        os.makedirs(f"{self.bundle}/rootfs/bin")
        shutil.copy("/bin/busybox", f"{self.bundle}/rootfs/bin/busybox")
        subprocess.run(["runc", "spec"], cwd=self.bundle, check=True)
        config = json.load(open(f"{self.bundle}/config.json"))
        config["process"]["args"] = ["/bin/busybox", "echo", "hello"]
        config["process"]["terminal"] = False
        json.dump(config, open(f"{self.bundle}/config.json", "w"))
        self.runs = 0

    def start(self):
        self.runs += 1
        start = time.perf_counter()
        subprocess.run(["runc", "run", "--bundle", self.bundle, f"bench-{os.getpid()}-{self.runs}"],
                       stdout=subprocess.DEVNULL, check=True)
        return time.perf_counter() - start

    def remove(self):
        shutil.rmtree(self.bundle)


WARM = 5


def deploy(up, digest, n):
    """Deploy → first 200 beside a runc container start, alternated one for
    one, each warmed by WARM runs that are not counted (page cache, binaries,
    the control plane's compiled module)."""
    ingress = json.loads(up.request("GET", "/apis/flotilla.dev/v1/nodes/bench"))["status"]["ingressAddress"]
    port = int(ingress.rsplit(":", 1)[1])
    times, runc_times = [], []
    poller = Poller(port)
    runc = Runc()
    for i in range(WARM + n):
        name = f"d{i}"
        start = time.perf_counter()
        up.request("POST", WORKLOADS, http_workload(name, digest, f"{name}.local"))
        while poller.status(f"{name}.local") != 200:
            time.sleep(0.0002)
        took = time.perf_counter() - start
        up.request("DELETE", f"{WORKLOADS}/{name}")
        runc_took = runc.start()
        if i >= WARM:
            times.append(took)
            runc_times.append(runc_took)
    runc.remove()
    times.sort()
    p50 = statistics.median(times) * 1000
    runc_p50 = statistics.median(runc_times) * 1000
    print(f"\ndeploy -> first 200 OK over {n} (after {WARM} warm-up runs): p50 {p50:.1f} ms, "
          f"p90 {times[int(n * 0.9)] * 1000:.1f} ms, min {times[0] * 1000:.1f} ms")
    print(f"runc run (busybox echo), alternated with it, over {n}: p50 {runc_p50:.1f} ms")
    print(f"deploy -> first 200 is {runc_p50 / p50:.0f}x faster than a runc container start")


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    n_deploy = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    up, digest = throughput(rounds, seconds)
    deploy(up, digest, n_deploy)
    up.stop()


if __name__ == "__main__":
    main()
