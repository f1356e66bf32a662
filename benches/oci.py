#!/usr/bin/env python3
"""Modules from an OCI registry (numbers in BENCHMARKS.md): Debian's
`docker-registry` and `flotilla up` on loopback.

  1. apply -> Running of a 20 MiB module by tag, alternating per round:
       cold: a module the control plane has never seen (each round pushes
             another 20 MiB variant first, untimed): resolve, pull, store,
             then the node fetches it from the control plane and runs it;
       warm: a second workload naming the same tag: resolve only (the
             module is in the blob store, and cached on the node);
     timed from the POST to the Instance's Running, polled every 10 ms;
  2. pull throughput of the same 20 MiB blob: `flotilla pull` (manifest,
     blob, digest check, file written) vs `curl` of the blob URL (bytes to
     /dev/null), alternated, both warmed once.

usage: benches/oci.py [ROUNDS]   (after scripts/build-sample-modules.sh and
       cargo build --release)
"""
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from up import FLOTILLA, ROOT, Up, free_port  # noqa: E402

SIZE = 20 << 20
NS = "/apis/flotilla.dev/v1/namespaces/default"


def padded(base, size, variant):
    """`base` and a custom section of `size` bytes in all (a valid module)."""
    name = b"flotilla-padding"
    payload = bytes([variant % 251]) * (size - len(base))
    content = bytes([len(name)]) + name + payload
    length, leb = len(content), bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        leb.append(byte | (0x80 if length else 0))
        if not length:
            break
    return base + b"\x00" + bytes(leb) + content


class Registry:
    def __init__(self):
        self.dir = tempfile.mkdtemp()
        self.port = free_port()
        config = os.path.join(self.dir, "config.yml")
        with open(config, "w") as f:
            f.write(f"version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {self.dir}/storage}}\n"
                    f"http:\n  addr: 127.0.0.1:{self.port}\n  secret: bench\n")
        self.proc = subprocess.Popen(["/usr/bin/docker-registry", "serve", config],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)

    def close(self):
        self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def apply_until_running(up, name, source):
    spec = {"apiVersion": "flotilla.dev/v1", "kind": "Workload",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"module": {"source": source}, "args": ["1000"]}}
    started = time.perf_counter()
    up.request("POST", f"{NS}/workloads", spec)
    while True:
        items = json.loads(up.request("GET", f"{NS}/instances?fieldSelector=spec.workload={name}"))["items"]
        if any(i.get("status", {}).get("phase") == "Running" for i in items):
            return time.perf_counter() - started
        if time.perf_counter() - started > 120:
            raise SystemExit(f"{name} not Running in 120 s")
        time.sleep(0.01)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    base = open(os.path.join(ROOT, "target/sample-modules/sleeper.wasm"), "rb").read()
    registry = Registry()
    up = Up(100)
    work = tempfile.mkdtemp()
    env = dict(os.environ, FLOTILLA_CONFIG=os.path.join(up.dir, "config.yaml"))
    at = f"127.0.0.1:{registry.port}/bench/big"
    try:
        cold, warm = [], []
        for r in range(rounds):
            module = os.path.join(work, f"big-{r}.wasm")
            with open(module, "wb") as f:
                f.write(padded(base, SIZE, r))
            subprocess.run([FLOTILLA, "push", module, f"oci://{at}:v{r}"], env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            cold.append(apply_until_running(up, f"cold-{r}", f"oci://{at}:v{r}"))
            warm.append(apply_until_running(up, f"warm-{r}", f"oci://{at}:v{r}"))
            for name in (f"cold-{r}", f"warm-{r}"):
                up.request("DELETE", f"{NS}/workloads/{name}")
        print(f"apply -> Running, 20 MiB by tag: cold p50 {statistics.median(cold)*1000:.0f} ms "
              f"(min {min(cold)*1000:.0f}, max {max(cold)*1000:.0f}); warm p50 {statistics.median(warm)*1000:.0f} ms "
              f"(min {min(warm)*1000:.0f}, max {max(warm)*1000:.0f}); {rounds} rounds")

        digest = "sha256:" + hashlib.sha256(open(os.path.join(work, "big-0.wasm"), "rb").read()).hexdigest()
        blob_url = f"http://{at.split('/')[0]}/v2/bench/big/blobs/{digest}"
        out = os.path.join(work, "pulled.wasm")
        pull = [FLOTILLA, "pull", f"oci://{at}:v0", "-o", out]
        curl = ["curl", "-sf", "-o", "/dev/null", blob_url]
        times = {"flotilla pull": [], "curl": []}
        for command in (pull, curl):  # warm both
            subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(max(rounds * 2, 10)):
            for label, command in (("flotilla pull", pull), ("curl", curl)):
                started = time.perf_counter()
                subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                times[label].append(time.perf_counter() - started)
        medians = {k: statistics.median(v) for k, v in times.items()}
        for label, seconds in medians.items():
            print(f"{label}: p50 {seconds*1000:.1f} ms, {SIZE / seconds / (1 << 20):.0f} MiB/s")
        print(f"flotilla pull / curl = {medians['flotilla pull'] / medians['curl']:.2f}x")
    finally:
        up.proc.kill()
        registry.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
