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
#   incr        `lake run` after it: every model reads only what was added since its last run
#   one_raw     `lake run` after 100 HubSpot deliveries arrive again (one raw table changed):
#               only the models downstream of it may run; the script lists which ran
#   resolve_full `lake run --select entity_index --full-refresh`: entity resolution of every
#               customer record (cpu_s / wall_s shows how many cores it used)
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
# Day 100 starts on 2026-02-08: the first 99 days, then day 100 with the deliveries sent late
# after it (about 1.3% of the events).
"$LAKE_BIN" "${gen[@]}" --until 2026-02-08 --start 2025-11-01 --out events > /dev/null
"$LAKE_BIN" "${gen[@]}" --since 2026-02-08 --start 2025-11-01 --out next > /dev/null

measure() { # name, command...: wall seconds, CPU seconds (user + system) and peak MiB
  local name=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$dir/time.txt" "$@" > "$dir/$name.log" 2>&1 || { cat "$dir/$name.log"; exit 1; }
  read -r wall user sys kib < "$dir/time.txt"
  printf '| %s | %.2f | %.2f | %d |\n' "$name" "$wall" "$(python3 -c "print($user + $sys)")" $((kib / 1024))
}

orders() { "$LAKE_BIN" sql "select count(*) from staging.stg_shopify_orders" --format csv | tail -1; }
events=$(cat events/*.ndjson | wc -l)
new_events=$(cat next/*.ndjson | wc -l)
echo "customers $CUSTOMERS, $DAYS days: $events events, then $new_events more ($(python3 -c "print(f'{100 * $new_events / $events:.2f}%')"); $(du -sh events | cut -f1) of NDJSON); $(nproc) cores"
echo
echo "| step | wall_s | cpu_s | peak_MiB |"
echo "|---|---:|---:|---:|"
measure ingest "$LAKE_BIN" ingest --all --once
measure full "$LAKE_BIN" run
measure noop "$LAKE_BIN" run
mv next/* events/
measure "ingest_1%" "$LAKE_BIN" ingest --all --once
measure incr "$LAKE_BIN" run
cp target/run_results.json incr_results.json
# One raw table changes: 100 HubSpot deliveries again; only the models downstream of
# raw.hubspot_contacts may run, every other model is up to date.
tail -n 100 "$(ls events/hubspot_contacts-*.ndjson | head -1)" > events/hubspot_contacts-again.ndjson
"$LAKE_BIN" ingest --all --once > /dev/null 2>&1
measure one_raw "$LAKE_BIN" run
cp target/run_results.json one_raw_results.json
# The entity-resolution model alone, rebuilt from scratch over every customer record.
measure resolve_full "$LAKE_BIN" run --select entity_index --full-refresh
echo
echo "orders staged: $(orders)"
echo
echo "after day 100 (incr):"
python3 - incr_results.json <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
for n in r:
    if n["name"].startswith("stg_"):
        print(f'- {n["name"]}: {n.get("rows_written")} rows merged, files read {n.get("input_files_read")}, rewritten {n.get("files_rewritten")}, {n["duration_seconds"]:.2f} s')
    elif n["kind"] == "model":
        print(f'- {n["name"]}: {n.get("operation")}, {n.get("rows_written")} rows, {n["duration_seconds"]:.2f} s')
PY
echo
echo "after 100 HubSpot deliveries (one_raw):"
python3 - one_raw_results.json <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
ran = [n["name"] for n in r if n["kind"] == "model" and n["status"] != "skipped"]
skipped = [n["name"] for n in r if n["kind"] == "model" and n["status"] == "skipped"]
print(f'- ran: {", ".join(ran)}')
print(f'- skipped (up to date): {", ".join(skipped)}')
PY
echo
echo "entity resolution, full: $("$LAKE_BIN" sql "select concat(records_in, ' records, ', candidate_pairs, ' pairs, ', matches, ' matches, resolve ', duration_ms, ' ms') from semantic.entity_resolution_stats order by run_at desc limit 1" --format csv | tail -1)"
