#!/usr/bin/env python3
"""The ingest sections of bench/run.sh as Markdown: medians of the runs it recorded, and the
checks that make a comparison count (every repetition of a tool stored the same rows and dead
letters, and the same as lake's; a Kafka run stored every message once).

    python3 bench/ingest_report.py files RUNS.tsv FAILURES
    python3 bench/ingest_report.py kafka RUNS.tsv FAILURES

RUNS.tsv holds one line per run (bench/run.sh writes them):
  files: kind tool rep wall_s rss_kib rows dead_letters data_bytes input_lines input_bytes own_s
  kafka: kind partitions tool rep wall_s rss_kib rows dead_letters data_bytes messages input_bytes own_s
FAILURES lists the failures found so far (one per line); those found here are appended, and
bench/run.sh exits 1 when it is not empty.
"""

import os
import statistics
import sys
from collections import defaultdict


def number(text):
    """A count, or the text lake printed instead ("n/a": its count query failed)."""
    return int(text) if text.isdigit() else text


def count(v):
    return f"{v:,}" if isinstance(v, int) else v


def load(path, key_fields):
    """Runs by (key fields..., tool): dicts of wall, rss, rows, dead, size, events, nbytes, own."""
    runs = defaultdict(list)
    for line in open(path):
        fields = line.rstrip("\n").split("\t")
        key, (tool, _rep, wall, rss, rows, dead, size, events, nbytes, own) = fields[:key_fields], fields[key_fields:]
        runs[(*key, tool)].append(dict(wall=float(wall), rss=int(rss), rows=number(rows), dead=number(dead),
                                       size=int(size), events=int(events), nbytes=int(nbytes),
                                       own=float(own) if own else None))
    return runs


def check(label, tool, rs, lake, failures):
    """Every repetition of `tool` stored the same rows and dead letters, and the same as lake's."""
    counts = {(r["rows"], r["dead"]) for r in rs}
    if len(counts) > 1:
        failures.append(f"{label}: {tool} stored different rows/dead letters between repetitions: {sorted(counts)}")
    first = rs[0]
    if (first["rows"], first["dead"]) != (lake[0]["rows"], lake[0]["dead"]):
        failures.append(f"{label}: {tool} stored {first['rows']} rows and {first['dead']} dead letters, "
                        f"lake {lake[0]['rows']} and {lake[0]['dead']}")


def row(rs):
    """The figures of one tool's runs: median wall, min-max, own, events/s, MB/s, peak RSS, bytes/event."""
    walls = [r["wall"] for r in rs]
    med, first = statistics.median(walls), rs[0]
    own = statistics.median(r["own"] for r in rs) if first["own"] is not None else None
    return med, [f"{first['events']:,}", f"{first['nbytes'] / 1e6:,.1f}", f"{med:.2f}", f"{min(walls):.2f}-{max(walls):.2f}",
                 "" if own is None else f"{own:.2f}", f"{first['events'] / med:,.0f}", f"{first['nbytes'] / 1e6 / med:,.1f}",
                 f"{max(r['rss'] for r in rs) / 1024:,.0f}", f"{statistics.median(r['size'] for r in rs) / first['events']:,.1f}",
                 count(first["rows"]), count(first["dead"])]


def files(runs, failures):
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
    for (kind,) in dict.fromkeys(key[:1] for key in runs):
        lake = runs[kind, "lake"]
        lake_med = statistics.median(r["wall"] for r in lake)
        lake_eps = lake[0]["events"] / lake_med
        for tool in ("lake", "sink", "bulk"):
            rs = runs.get((kind, tool))
            if not rs:
                continue
            check(kind, NAMES[tool], rs, lake, failures)
            med, cells = row(rs)
            ratios = ["", ""] if tool == "lake" else [f"{lake_med / med:.2f}", f"{lake_eps / (rs[0]['events'] / med):.2f}x"]
            print("| " + " | ".join([kind, NAMES[tool], *cells, *ratios]) + " |")
    return "Every run stored the same rows and dead letters as lake's (and lake no line twice)."


def kafka(runs, failures):
    print("## Ingest: a Kafka topic of webhook payloads")
    print()
    print("The same payloads (bench/payloads.py, seed 7, 1% cut short), one message per line, produced (not timed) to a")
    print("topic of 1 or 3 partitions on a Tansu broker on loopback (in-memory storage; a new broker per topic), each")
    print("kind into its own raw table. lake: `lake ingest --from kafka://HOST:PORT/<kind> --table raw.<kind> --once` in a")
    print("fresh project (every partition from its offsets in the table, batches of 10,000). confluent-kafka sink: the")
    print("Python sink's parsing, typing and dead letters (`json.loads` per message) on a confluent-kafka consumer,")
    print("`consume` in chunks of 10,000, PyIceberg appends of 50,000 rows, each followed by a synchronous offset commit")
    print("(bench/ingest_sink.py kafka). Both stop at the high watermarks. Wall seconds and peak RSS of the whole process")
    print("(startup included); MB/s of the message payloads; \"own s\" is the sink's own timer (catalog open to last")
    print("commit). lake/sink events/s above 1 means lake is faster.")
    print()
    print("| payload | partitions | tool | events | MB | median s | min-max s | own s | events/s | MB/s | peak RSS MiB | bytes/event on disk | rows | dead letters | lake/sink events/s |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind, parts in dict.fromkeys(key[:2] for key in runs):
        lake = runs[kind, parts, "lake"]
        lake_med = statistics.median(r["wall"] for r in lake)
        for tool in ("lake", "sink"):
            rs = runs.get((kind, parts, tool))
            if not rs:
                continue
            label, first = f"kafka {kind} {parts}", rs[0]
            check(label, tool, rs, lake, failures)
            if isinstance(first["rows"], int) and isinstance(first["dead"], int) and first["rows"] + first["dead"] != first["events"]:
                failures.append(f"{label}: {tool} stored {first['rows']} rows + {first['dead']} dead letters "
                                f"of {first['events']} messages")
            med, cells = row(rs)
            name = "lake" if tool == "lake" else "confluent-kafka sink"
            print("| " + " | ".join([kind, parts, name, *cells, "" if tool == "lake" else f"{med / lake_med:.2f}x"]) + " |")
    return "Every run stored every message once, as a row or a dead letter, and the same rows and dead letters as lake."


def main():
    section, tsv, failures_path = sys.argv[1:4]
    # Failures the runs found already (lake storing a record twice), then the count comparisons.
    failures = open(failures_path).read().splitlines() if os.path.exists(failures_path) else []
    seen = len(failures)
    runs = load(tsv, 1 if section == "files" else 2)
    ok = (files if section == "files" else kafka)(runs, failures)
    print()
    if failures[seen:]:
        with open(failures_path, "a") as f:
            for line in failures[seen:]:
                f.write(line + "\n")
    if failures:
        print("**Counts differ** (the comparison is void):")
        for line in failures:
            print(f"- {line}")
    else:
        print(ok)
    print()


if __name__ == "__main__":
    main()
