#!/usr/bin/env bash
# Incremental cost of the demo pipeline: does a run cost what changed, or the whole lakehouse?
#
#   bash bench/pipeline.sh [CUSTOMERS]          (default 62500: about 100,000 orders)
#   LAKE_BIN=path/to/lake bash bench/pipeline.sh ...   (use that binary instead of building)
#
# Builds a fresh copy of the repository's demo project (models, macros, tests), generates 100
# days of webhook events for CUSTOMERS people (`lake demo generate`; each person's orders fall
# on random days, so one day is about 1% of the events), and measures, on the release binary:
#   ingest      `lake ingest --all --once` of the first 99 days
#   full        `lake run` of every model on them (the first build)
#   noop        `lake run` again, nothing new
#   ingest_1%   ingesting day 100 (new orders, updates to earlier ones, late deliveries)
#   incr        `lake run` after it: staging merges only the new raw rows, the rest rebuilds
# Each figure is wall seconds and peak memory (MiB) of the whole command; rows are from the
# catalog. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
if [ -z "${LAKE_BIN:-}" ]; then
  cargo build --release --quiet
  LAKE_BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/lake"
fi
CUSTOMERS=${1:-62500}
DAYS=100
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cp -r "$ROOT/lake.toml" "$ROOT/models" "$ROOT/macros" "$dir/"
mkdir -p "$dir/tests" && cp "$ROOT"/tests/*.sql "$dir/tests/"
cd "$dir"

gen=(demo generate --customers "$CUSTOMERS" --days "$DAYS" --seed 7)
"$LAKE_BIN" "${gen[@]}" --until 2026-02-09 --start 2025-11-01 --out events > /dev/null
"$LAKE_BIN" "${gen[@]}" --since 2026-02-09 --start 2025-11-01 --out next > /dev/null

measure() { # name, command...: wall seconds and peak MiB
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$dir/time.txt" "$@" > "$dir/$name.log" 2>&1 || { cat "$dir/$name.log"; exit 1; }
  read -r wall kib < "$dir/time.txt"
  printf '| %s | %.2f | %d |\n' "$name" "$wall" $((kib / 1024))
}

orders() { "$LAKE_BIN" sql "select count(*) from staging.stg_shopify_orders" --format csv | tail -1; }
events=$(cat events/*.ndjson | wc -l)
new_events=$(cat next/*.ndjson | wc -l)
echo "customers $CUSTOMERS, $DAYS days: $events events, then $new_events more ($(du -sh events | cut -f1) of NDJSON); $(nproc) cores"
echo
echo "| step | wall_s | peak_MiB |"
echo "|---|---:|---:|"
measure ingest "$LAKE_BIN" ingest --all --once
measure full "$LAKE_BIN" run
measure noop "$LAKE_BIN" run
mv next/* events/
measure "ingest_1%" "$LAKE_BIN" ingest --all --once
measure incr "$LAKE_BIN" run
echo
echo "orders staged: $(orders)"
python3 - "$dir/target/run_results.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
for n in r:
    if n["name"].startswith("stg_"):
        print(f'{n["name"]}: {n.get("rows_written")} rows merged, files read {n.get("input_files_read")}, rewritten {n.get("files_rewritten")}, {n["duration_seconds"]:.2f} s')
    elif n["kind"] == "model":
        print(f'{n["name"]}: {n.get("operation")}, {n.get("rows_written")} rows, {n["duration_seconds"]:.2f} s')
PY
