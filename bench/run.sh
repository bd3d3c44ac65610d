#!/usr/bin/env bash
# The benchmark suite: `lake` side by side with the tools users would pick instead, on the same
# data, each comparison run alternating lake and its peers, several repetitions, reported as
# medians with min-max, and ratios lake/peer.
#
#   bash bench/run.sh [--quick] [SECTION...]       (sections: ingest resolve; default: all)
#   LAKE_BIN=path/to/lake bash bench/run.sh ...    (use that binary instead of building)
#   INGEST_EVENTS=200000 INGEST_KINDS="shopify stripe" bash bench/run.sh ingest
#   RESOLVE_RECORDS="50000 200000" bash bench/run.sh resolve
#
# Sizes: 1,000,000 events per payload kind, resolve at 100,000 and 1,000,000 records, 3
# repetitions; --quick: 50,000 events, 20,000 records, 2 repetitions (a few minutes on the
# 2-core VM; INGEST_EVENTS and RESOLVE_RECORDS override either). The peers are installed
# from PyPI, pinned, into a venv at $HOME/.cache/lake-bench-venv (created on the first run,
# reused after; versions printed).
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
#   resolve  Entity resolution against Splink 5: bench/resolve.py repeated, medians of its
#            rows (lake resolve rules / probabilistic, Splink EM / same rules on DuckDB).
# Not yet measured here (TODO functions below, which print "not yet"): ingest from Kafka,
# model builds against dbt-duckdb, compile against `dbt parse`.
#
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
    ingest|resolve) SECTIONS+=("$arg") ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg (want --quick, ingest, resolve)" >&2; exit 2 ;;
  esac
done
[ ${#SECTIONS[@]} -eq 0 ] && SECTIONS=(ingest resolve)
if [ "$QUICK" = 1 ]; then
  REPS=2
  INGEST_EVENTS=${INGEST_EVENTS:-50000}
  RESOLVE_RECORDS=${RESOLVE_RECORDS:-20000}
else
  REPS=3
  INGEST_EVENTS=${INGEST_EVENTS:-1000000}
  RESOLVE_RECORDS=${RESOLVE_RECORDS:-100000 1000000}
fi
INGEST_KINDS=${INGEST_KINDS:-shopify stripe hubspot}

# ---- the lake binary -------------------------------------------------------------------
if [ -z "${LAKE_BIN:-}" ]; then
  cargo build --release --quiet
  LAKE_BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/lake"
fi
LAKE=$(realpath "$LAKE_BIN")

# ---- the peers, pinned, in a venv ------------------------------------------------------
VENV="$HOME/.cache/lake-bench-venv"
PINS=("pyiceberg[sql-sqlite,pyarrow]==0.12.0" "pyarrow==26.0.1")
# bench/resolve.py runs Splink (its EM setup from bench/er_eval.py needs pandas) on DuckDB.
[[ " ${SECTIONS[*]} " == *" resolve "* ]] && PINS+=("splink==5.0.0" "duckdb==1.5.5" "pandas==2.3.3")
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
for dist in ("pyiceberg", "pyarrow", "SQLAlchemy", "splink", "duckdb", "pandas"):
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
trap 'rm -rf "$WORK"' EXIT

# ---- helpers ----------------------------------------------------------------------------
# measure NAME CMD...: runs CMD in the current directory (stdout to $WORK/NAME.out, stderr to
# $WORK/NAME.err); sets WALL (seconds) and RSS_KIB (peak resident memory of the process).
measure() {
  local name=$1; shift
  local status=0
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f "%e %M" -o "$WORK/$name.time" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err" || status=$?
  else
    python3 - "$WORK/$name.time" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err" <<'PY' || status=$?
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.call(sys.argv[2:])
wall = time.perf_counter() - start
with open(sys.argv[1], "w") as f:
    f.write(f"{wall:.2f} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\n")
sys.exit(code)
PY
  fi
  if [ "$status" != 0 ]; then
    echo "failed ($status): $*" >&2
    tail -20 "$WORK/$name.err" >&2
    exit 1
  fi
  read -r WALL RSS_KIB < <(tail -1 "$WORK/$name.time")
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
ingest_run_lake() { # kind rep data
  local kind=$1 rep=$2 data=$3 dir="$WORK/lake-$1-$2"
  mkdir -p "$dir"
  printf 'name = "bench"\n' > "$dir/lake.toml"
  cd "$dir"
  measure "lake-$kind-$rep" "$LAKE" ingest --from "$data" --table "raw.$kind" --once
  local rows dead lines
  rows=$(lake_count "select count(*) from raw.$kind")
  dead=$(lake_count "select count(*) from raw.${kind}__errors")
  lines=$(lake_count "select count(distinct _line) from raw.$kind")
  cd "$ROOT"
  [ "$lines" = "$rows" ] || fail "$kind rep $rep: lake stored $rows rows from $lines distinct lines (duplicates)"
  printf '%s\tlake\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n' "$kind" "$rep" "$WALL" "$RSS_KIB" "$rows" "$dead" \
    "$(parquet_bytes "$dir/.lake")" "$(wc -l < "$data")" "$(stat -c %s "$data")" >> "$WORK/ingest.tsv"
  echo "  $kind rep $rep lake: ${WALL} s, $rows rows, $dead dead letters" >&2
  rm -rf "$dir"
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
  "$PY" - "$WORK/ingest.tsv" "$WORK/failures" <<'PY'
import statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    kind, tool, rep, wall, rss, rows, dead, size, lines, nbytes, own = line.rstrip("\n").split("\t")
    number = lambda text: int(text) if text.isdigit() else text  # "n/a": lake's count query failed
    runs[kind, tool].append(dict(wall=float(wall), rss=int(rss), rows=number(rows), dead=number(dead), size=int(size),
                                 lines=int(lines), nbytes=int(nbytes), own=float(own) if own else None))
import os
# Failures the runs found already (lake storing a line twice), then the count comparisons.
failures = open(sys.argv[2]).read().splitlines() if os.path.exists(sys.argv[2]) else []
seen = len(failures)
count = lambda v: f"{v:,}" if isinstance(v, int) else v
NAMES = {"lake": "lake", "sink": "Python sink", "bulk": "PyIceberg bulk"}
print("## Ingest: NDJSON files of webhook payloads")
print()
print("Each payload kind into its own raw table, from one NDJSON file (bench/payloads.py, seed 7, 1% of the lines cut")
print("short). lake: `lake ingest --from FILE --table raw.<kind> --once` in a fresh project (schema inferred, batches")
print("of 10,000). Python sink: `json.loads` per line, dead letters to a table, PyIceberg appends of 10,000 rows with")
print("lake's columns. PyIceberg bulk: one `pyarrow.json.read_json` and one `table.append` (bench/ingest_sink.py).")
print("Wall seconds and peak RSS of the whole process; events/s and MB/s of the input the tool read (the")
print("bulk case reads the file without the malformed lines, which are its dead letters: removed beforehand, not")
print("stored); bytes on disk are the Parquet files of the rows and dead-letter tables per input event. \"own s\" is")
print("the peer's own timer (catalog open to last commit, interpreter start and imports excluded). lake/peer wall")
print("below 1 means lake took less time; lake/peer events/s above 1 means lake is faster.")
print()
print("| payload | tool | events | MB | median s | min-max s | own s | events/s | MB/s | peak RSS MiB | bytes/event on disk | rows | dead letters | lake/peer wall | lake/peer events/s |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
kinds = list(dict.fromkeys(k for k, _ in runs))
for kind in kinds:
    lake = runs[kind, "lake"]
    lake_med = statistics.median(r["wall"] for r in lake)
    lake_eps = lake[0]["lines"] / lake_med
    for tool in ("lake", "sink", "bulk"):
        rs = runs.get((kind, tool))
        if not rs:
            continue
        walls = [r["wall"] for r in rs]
        med = statistics.median(walls)
        first = rs[0]
        counts = {(r["rows"], r["dead"]) for r in rs}
        if len(counts) > 1:
            failures.append(f"{kind} {tool}: different rows/dead letters between repetitions: {sorted(counts)}")
        if (first["rows"], first["dead"]) != (lake[0]["rows"], lake[0]["dead"]):
            failures.append(f"{kind} {tool}: {first['rows']} rows and {first['dead']} dead letters, lake "
                            f"{lake[0]['rows']} and {lake[0]['dead']}")
        eps = first["lines"] / med
        own = statistics.median(r["own"] for r in rs) if first["own"] is not None else None
        ratio_wall = "" if tool == "lake" else f"{lake_med / med:.2f}"
        ratio_eps = "" if tool == "lake" else f"{lake_eps / eps:.2f}x"
        print(f"| {kind} | {NAMES[tool]} | {first['lines']:,} | {first['nbytes'] / 1e6:,.1f} | {med:.2f} | "
              f"{min(walls):.2f}-{max(walls):.2f} | {'' if own is None else f'{own:.2f}'} | {eps:,.0f} | "
              f"{first['nbytes'] / 1e6 / med:,.1f} | {max(r['rss'] for r in rs) / 1024:,.0f} | "
              f"{statistics.median(r['size'] for r in rs) / first['lines']:,.1f} | {count(first['rows'])} | {count(first['dead'])} | "
              f"{ratio_wall} | {ratio_eps} |")
print()
if failures:
    with open(sys.argv[2], "a") as f:
        for line in failures[seen:]:
            f.write(line + "\n")
    print("**Counts differ** (the comparison is void):")
    for line in failures:
        print(f"- {line}")
else:
    print("Every run stored the same rows and dead letters as lake's (and lake no line twice).")
print()
PY
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
PEER = {"lake resolve": "Splink 5 + DuckDB (same rules)", "lake resolve (probabilistic)": "Splink 5 (EM, probabilistic)"}
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
}

# ---- sections still to write (not measured, not reported as results) ----------------------
section_ingest_kafka() { echo "ingest from Kafka (Tansu) against a confluent-kafka consumer + PyIceberg: not yet" >&2; }
section_models() { echo "model builds (full, 1% incremental, no-op) against dbt-duckdb: not yet" >&2; }
section_compile() { echo "compile of 1,000/10,000-model projects against dbt parse --no-partial-parse: not yet" >&2; }

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
section_ingest_kafka
section_models
section_compile
{
  echo "Not yet in the suite: ingest from Kafka, model builds against dbt-duckdb, compile against dbt parse."
  echo
  echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); the suite took $(( $(date +%s) - started )) s."
} | tee -a "$RESULTS"
echo "results: $RESULTS" >&2
if [ -s "$WORK/failures" ]; then
  echo "counts differ between lake and a peer (see $RESULTS)" >&2
  exit 1
fi
