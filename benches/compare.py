#!/usr/bin/env python3
"""Times whole commands, alternating between them round by round so a noisy,
shared machine hurts each one alike, and prints medians, p90s and the ratio of
each command to the first (the baseline).

usage: compare.py ROUNDS 'label=command args…' 'label=command args…' …
"""
import shlex
import statistics
import subprocess
import sys
import time

WARMUP = 3


def run(argv):
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} exited with {done.returncode}")
    return elapsed


def main():
    rounds = int(sys.argv[1])
    commands = []
    for spec in sys.argv[2:]:
        label, _, command = spec.partition("=")
        commands.append((label, shlex.split(command)))
    for _ in range(WARMUP):
        for _, argv in commands:
            run(argv)
    times = {label: [] for label, _ in commands}
    for _ in range(rounds):
        for label, argv in commands:
            times[label].append(run(argv))
    base = statistics.median(times[commands[0][0]])
    print(f"| command | median | p90 | ratio to {commands[0][0]} |")
    print("|---|---|---|---|")
    for label, argv in commands:
        t = sorted(times[label])
        median = statistics.median(t)
        p90 = t[int(len(t) * 0.9) - 1]
        print(f"| {label} | {median * 1000:.2f} ms | {p90 * 1000:.2f} ms | {median / base:.2f}× |")


if __name__ == "__main__":
    main()
