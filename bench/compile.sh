#!/usr/bin/env bash
# Compile benchmark: `lake compile` (and `lake ls`) of a generated project of N SQL models.
#
#   bash bench/compile.sh [N...]            (default: 1000 10000)
#   LAKE_BIN=path/to/lake bash bench/compile.sh ...   (use that binary instead of building)
#
# The project (bench/gen_models.py): model i reads model i-1 and model i/3 (a chain with
# fan-out), every 10th is incremental with a watermark, every 50th ephemeral (inlined as a
# CTE), each calls one of 20 macros in 5 macro files, the first reads a declared source;
# staging and marts layers. Prints wall and CPU
# seconds (user+sys) of each command, median of 3 runs. Uses the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${LAKE_BIN:-}" ]; then
  cargo build --release --quiet
  LAKE_BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/lake"
fi
SIZES=("$@")
[ ${#SIZES[@]} -eq 0 ] && SIZES=(1000 10000)
printf '%-8s %-8s %-8s %-8s\n' models command wall_s cpu_s
for n in "${SIZES[@]}"; do
  dir=$(mktemp -d)
  python3 bench/gen_models.py "$dir" "$n"
  for cmd in ls compile; do
    python3 - "$LAKE_BIN" "$dir" "$cmd" "$n" <<'PY'
import os, resource, statistics, subprocess, sys, time
lake, project, cmd, n = sys.argv[1:]
walls, cpus = [], []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([lake, cmd], cwd=project, check=True, stdout=subprocess.DEVNULL)
    walls.append(time.perf_counter() - start)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
print(f"{n:<8} {cmd:<8} {statistics.median(walls):<8.2f} {statistics.median(cpus):<8.2f}")
PY
  done
  rm -rf "$dir"
done
