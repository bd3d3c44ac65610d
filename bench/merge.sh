#!/usr/bin/env bash
# Merge benchmark: does a merge's cost follow the changed data or the table size, in
# copy-on-write and in merge-on-read?
#
#   bash bench/merge.sh [ROWS...]        (default: 1000000 10000000 50000000)
#   MODES="merge-on-read" bash bench/merge.sh ...   (default: copy-on-write merge-on-read)
#   LAKE_BIN=path/to/lake bash bench/merge.sh ...   (use that binary instead of building)
#
# For each table size and merge mode it builds a fresh project whose `orders` table
# (incremental merge on `id`) holds ROWS rows in ~1 MiB files, then merges two batches: one
# that updates 1% of the keys and one that updates a fixed 10,000 keys (each a contiguous id
# range, as late updates to recent orders usually are), each three times over fresh key ranges.
# It reports the merges' median wall time with min–max (the whole `lake run`), the bytes the last
# one wrote (data and delete files, from the snapshot summary), the
# data files it rewrote and the delete files it added, and checks the merged rows and the row
# count. Uses the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${LAKE_BIN:-}" ]; then
  cargo build --release --quiet
  LAKE_BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/lake"
fi
LAKE="$LAKE_BIN"
SIZES=("$@")
[ ${#SIZES[@]} -eq 0 ] && SIZES=(1000000 10000000 50000000)
read -r -a MODES <<< "${MODES:-copy-on-write merge-on-read}"

echo "| rows | mode | changed keys | build_s | merge_s, median (min–max) | MB written | files rewritten | delete files | total files |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
for rows in "${SIZES[@]}"; do
for mode in "${MODES[@]}"; do
  dir=$(mktemp -d)
  mkdir -p "$dir/seeds" "$dir/models/staging"
  cat > "$dir/lake.toml" <<TOML
name = "bench"
[write]
target_file_size_mb = 1
merge_mode = "$mode"
TOML
  cat > "$dir/seeds/seeds.yml" <<YML
seeds:
  - name: orders
    config:
      files: "orders_*.csv"
      column_types: {id: bigint, customer_id: bigint, amount: double, status: varchar, seq: bigint}
YML
  mkdir -p "$dir/models"
  printf 'sources:\n  - name: raw\n    tables:\n      - name: orders\n' > "$dir/models/sources.yml"
  cat > "$dir/models/staging/orders.sql" <<'SQL'
{{ config(materialized='incremental', incremental_strategy='merge', unique_key='id', watermark='seq') }}
select id, customer_id, amount, status, seq from {{ source('raw', 'orders') }}
{% if is_incremental() %}where seq > {{ watermark }}{% endif %}
SQL
  python3 - "$dir/seeds/orders_0.csv" "$rows" <<'PY'
import sys
path, rows = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    f.write("id,customer_id,amount,status,seq\n")
    for i in range(rows):
        f.write(f"{i},{i % 50000},{(i * 37) % 10000 / 100},paid,1\n")
PY
  start=$(date +%s.%N)
  (cd "$dir" && "$LAKE" seed >/dev/null && "$LAKE" run >/dev/null)
  built=$(date +%s.%N)
  build_s=$(python3 -c "print(round($built - $start, 2))")
  seq=2
  first_id=0
  for changed in $((rows / 100)) 10000; do
  times=()
  for rep in 1 2 3; do
    python3 - "$dir/seeds/orders_$seq.csv" "$first_id" "$changed" "$seq" <<'PY'
import sys
path, first, changed, seq = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with open(path, "w") as f:
    f.write("id,customer_id,amount,status,seq\n")
    for i in range(first, first + changed):
        f.write(f"{i},{i % 50000},0.0,refunded{seq},{seq}\n")
PY
    (cd "$dir" && "$LAKE" seed >/dev/null)
    m0=$(date +%s.%N)
    (cd "$dir" && "$LAKE" run >/dev/null)
    m1=$(date +%s.%N)
    read -r rewritten deletes < <(python3 - "$dir" <<'PY'
import json, sys
r = [x for x in json.load(open(sys.argv[1] + "/target/run_results.json"))["results"] if x["name"] == "orders"][0]
print(r["files_rewritten"], r["delete_files_added"])
PY
)
    read -r files_now written < <(cd "$dir" && "$LAKE" show staging.orders --log-format json | python3 -c '
import json, sys
d = json.load(sys.stdin)
s = [s for s in d["snapshots"] if s["snapshot_id"] == d["current_snapshot_id"]][0]["summary"]
print(s["total-data-files"], "%.2f" % (int(s.get("added-files-size", 0)) / 1e6))')
    check=$(cd "$dir" && "$LAKE" sql "select count(*) from staging.orders where status = 'refunded$seq'" --format csv | tail -1)
    [ "$check" = "$changed" ] || { echo "merge result wrong: $check rows updated, expected $changed" >&2; exit 1; }
    total_rows=$(cd "$dir" && "$LAKE" sql "select count(*) from staging.orders" --format csv | tail -1)
    [ "$total_rows" = "$rows" ] || { echo "merge changed the row count: $total_rows, expected $rows" >&2; exit 1; }
    times+=("$(python3 -c "print(round($m1 - $m0, 3))")")
    first_id=$((first_id + changed * 3))
    seq=$((seq + 1))
  done
  merge_s=$(python3 -c 'import statistics, sys; t = sorted(map(float, sys.argv[1:])); print(f"{statistics.median(t):.2f} ({t[0]:.2f}–{t[-1]:.2f})")' "${times[@]}")
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$rows" "$mode" "$changed" "$build_s" \
    "$merge_s" "$written" "$rewritten" "$deletes" "$files_now"
  done
  rm -rf "$dir"
done
done
