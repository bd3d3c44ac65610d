#!/usr/bin/env bash
# Merge benchmark: does a merge's cost follow the changed data or the table size?
#
#   bash bench/merge.sh [ROWS...]        (default: 1000000 4000000)
#
# For each table size it builds a fresh project whose `orders` table (incremental merge on
# `id`) holds ROWS rows in ~8 MiB files, then merges a batch that updates 1% of the keys (a
# contiguous id range, as late updates to recent orders usually are) and reports the merge's
# wall time and the files it rewrote. Uses the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
LAKE="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/lake"
SIZES=("$@")
[ ${#SIZES[@]} -eq 0 ] && SIZES=(1000000 4000000)

printf '%-10s %-12s %-14s %-14s %-12s\n' rows changed build_s merge_s files_rewritten
for rows in "${SIZES[@]}"; do
  dir=$(mktemp -d)
  mkdir -p "$dir/seeds" "$dir/models/staging"
  cat > "$dir/lake.toml" <<TOML
name = "bench"
[write]
target_file_size_mb = 8
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
  changed=$((rows / 100))
  python3 - "$dir/seeds/orders_1.csv" "$rows" "$changed" <<'PY'
import sys
path, rows, changed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
first = rows - changed
with open(path, "w") as f:
    f.write("id,customer_id,amount,status,seq\n")
    for i in range(first, rows):
        f.write(f"{i},{i % 50000},0.0,refunded,2\n")
PY
  (cd "$dir" && "$LAKE" seed >/dev/null)
  m0=$(date +%s.%N)
  (cd "$dir" && "$LAKE" run >/dev/null)
  m1=$(date +%s.%N)
  rewritten=$(python3 -c "import json; r=[x for x in json.load(open('$dir/target/run_results.json'))['results'] if x['name']=='orders'][0]; print(r.get('files_rewritten', r.get('files_removed')))")
  check=$(cd "$dir" && "$LAKE" sql "select count(*) from staging.orders where status = 'refunded'" --format csv | tail -1)
  [ "$check" = "$changed" ] || { echo "merge result wrong: $check refunded rows, expected $changed" >&2; exit 1; }
  printf '%-10s %-12s %-14.2f %-14.2f %-12s\n' "$rows" "$changed" "$(python3 -c "print($built - $start)")" "$(python3 -c "print($m1 - $m0)")" "$rewritten"
  rm -rf "$dir"
done
