#!/usr/bin/env python3
"""Ingest of realistic webhook payloads by two `lake` binaries side by side (e.g. before and
after a change to record decoding): the same NDJSON file of Shopify orders (bench/orders.py,
nested customer and line items, about 3 KB per line, 1% cut short), `lake ingest --from FILE
--table raw.orders --once` (schema inferred, batches of 10,000), each binary in a fresh
project, runs alternating A and B.

    python3 bench/decode.py --a OLD_LAKE --b NEW_LAKE [--lines 200000] [--reps 3] [--file F]

Reported per binary: median and min-max wall seconds, events/s and MB/s at the median, and
the rows and dead letters stored (which must be the same for both, else it exits 1).
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(binary, data, workdir):
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / "lake.toml").write_text('name = "bench"\n')
    start = time.perf_counter()
    out = subprocess.run([binary, "ingest", "--from", str(data), "--table", "raw.orders", "--once"],
                         cwd=workdir, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"{binary} failed ({out.returncode}):\n{out.stderr}")
    m = re.search(r"(\d+) rows to raw\.orders, (\d+) dead letters", out.stdout)
    return seconds, (int(m.group(1)), int(m.group(2)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", required=True, help="the first lake binary (e.g. before)")
    parser.add_argument("--b", required=True, help="the second lake binary (e.g. after)")
    parser.add_argument("--lines", type=int, default=200000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--file", help="NDJSON file to use (generated when missing)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="lake-bench-decode-"))
    data = Path(args.file) if args.file else scratch / f"orders-{args.lines}.ndjson"
    if not data.exists():
        subprocess.run([sys.executable, str(HERE / "orders.py"), str(args.lines), str(data)], check=True)
    size = data.stat().st_size
    lines = sum(1 for _ in open(data, "rb"))
    print(f"{lines} lines, {size / 1e6:.1f} MB ({size / lines:.0f} bytes per line); {os.cpu_count()} CPUs")
    times = {"A": [], "B": []}
    results = {}
    for rep in range(args.reps):
        for name, binary in (("A", args.a), ("B", args.b)):
            seconds, stored = run(binary, data, scratch / f"project-{name}")
            times[name].append(seconds)
            results.setdefault(name, stored)
            print(f"  rep {rep + 1} {name}: {seconds:.2f} s ({stored[0]} rows, {stored[1]} dead letters)", flush=True)
    print("| binary | median s | min-max s | events/s | MB/s | rows | dead letters |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, binary in (("A", args.a), ("B", args.b)):
        med = statistics.median(times[name])
        rows, dead = results[name]
        print(f"| {name} `{binary}` | {med:.2f} | {min(times[name]):.2f}-{max(times[name]):.2f} | "
              f"{lines / med:,.0f} | {size / 1e6 / med:.1f} | {rows} | {dead} |")
    print(f"B/A (median wall time): {statistics.median(times['B']) / statistics.median(times['A']):.2f}")
    shutil.rmtree(scratch / "project-A", ignore_errors=True)
    shutil.rmtree(scratch / "project-B", ignore_errors=True)
    if results["A"] != results["B"]:
        sys.exit(f"the binaries stored different rows/dead letters: {results}")


if __name__ == "__main__":
    main()
