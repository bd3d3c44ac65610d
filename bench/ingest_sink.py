#!/usr/bin/env python3
"""The Python peers `lake ingest` is measured against (bench/run.sh), on an NDJSON file of
webhook payloads (bench/payloads.py), each writing Iceberg tables with PyIceberg 0.12 into a
SqlCatalog on SQLite with a local warehouse:

  sink   What a team writes by hand: reads the file line by line, `json.loads` each line,
         routes the lines that fail (not JSON, not an object, a value of the wrong type) to a
         dead-letter table `<table>__errors` (error_type, error_message, raw_payload, line,
         ...), and appends the good rows to `<table>` in batches of 10,000 (the dead letters
         of a batch first, then its rows, like `lake`). Rows get the columns `lake ingest`
         gives them: the top-level fields, typed from the first batch the way `lake` infers
         them (integers, doubles, booleans, ISO-8601 timestamps, text; nested objects and
         arrays as compact JSON text; later or reserved fields in `_extra` as a JSON object),
         then `_extra`, `_source`, `_record_id`, `_path`, `_line`, `_event_type`,
         `_received_at`, `_loaded_at`. Unlike `lake` it keeps no read positions, so a rerun
         or a crash mid-file loads lines twice.
  bulk   PyIceberg's best case: one `pyarrow.json.read_json` of the whole file (types
         inferred, nested objects as structs, arrays as lists) and one `table.append`. It
         cannot skip a malformed line (one fails the whole read), so it reads a copy with
         those lines removed beforehand (`clean`, not timed), and stores no dead letters. Two
         type fix-ups Parquet/Iceberg need are part of the timed work: null-typed fields
         (always null in the file) become strings, and fields that are always `{}` (e.g.
         Stripe's `fraud_details`, `radar_options`) are dropped (Parquet cannot write a struct
         without fields). It validates nothing and adds no metadata columns.
  kafka  The sink's parsing, typing and dead letters on a Kafka topic (confluent-kafka, the
         librdkafka client Python teams use): every partition from its beginning, `consume` in
         chunks of 10,000 messages, appends of `--batch` good rows (bench/run.sh: 50,000), each
         followed by a synchronous offset commit (fetch settings as lake's: no pause after
         the local queue fills); rows get lake's Kafka coordinates (`_topic`,
         `_kafka_partition`, `_offset`, `_key`). It stops at the high watermarks it saw at the
         start.
  clean  Writes IN's lines that `json.loads` parses as objects to OUT; prints how many it
         removed (the bulk case's input).
  produce  Creates a topic with `--partitions` partitions and writes each line of FILE as one
         message (not timed: the data for `kafka` and for `lake ingest --from kafka://`).

    python3 bench/ingest_sink.py sink FILE --warehouse DIR [--table raw.events] [--batch 10000]
    python3 bench/ingest_sink.py bulk CLEAN_FILE --warehouse DIR [--table raw.events]
    python3 bench/ingest_sink.py kafka kafka://HOST:PORT/TOPIC --warehouse DIR [--table ...] [--batch 50000]
    python3 bench/ingest_sink.py clean IN OUT
    python3 bench/ingest_sink.py produce FILE kafka://HOST:PORT/TOPIC [--partitions 3]

`sink`, `kafka` and `bulk` print one JSON line: {"peer", "seconds" (from opening the catalog to the
last commit, imports excluded), "rows" and "dead_letters" (counted by reading the tables back
after the timing), "data_bytes" (Parquet files under the warehouse)}. DIR must not exist yet.
"""

import argparse
import datetime
import json
import re
import sys
import time
from pathlib import Path

import pyarrow as pa

# The columns `lake` fills itself (src/ingest/records.rs): a payload field of that name goes
# to `_extra`.
METADATA_COLUMNS = {"_source", "_record_id", "_path", "_line", "_topic", "_kafka_partition", "_offset", "_key",
                    "_webhook_id", "_provider", "_event_type", "_received_at", "_loaded_at", "_extra"}
TS = pa.timestamp("us", tz="UTC")
ARROW = {"bigint": pa.int64(), "double": pa.float64(), "boolean": pa.bool_(), "varchar": pa.string(), "timestamptz": TS}
I64 = (-(2 ** 63), 2 ** 63 - 1)
# ISO-8601 date-times `lake` reads as timestamps (RFC 3339, or a space for the T, with or without
# a zone; without one it is UTC).
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})?")
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def parse_timestamp(s):
    """Microseconds since the epoch, or None when `s` is not an ISO-8601 date-time."""
    s = s.strip()
    if not TIMESTAMP.fullmatch(s):
        return None
    try:
        t = datetime.datetime.fromisoformat(s)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return (t - EPOCH) // datetime.timedelta(microseconds=1)


def infer(value):
    """The column type a first value suggests, as `lake` infers it (None for null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint" if I64[0] <= value <= I64[1] else "double"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str) and len(value) >= 16 and parse_timestamp(value) is not None:
        return "timestamptz"
    return "varchar"


def widen(a, b):
    if a == b:
        return a
    if {a, b} == {"bigint", "double"}:
        return "double"
    return "varchar"


class WrongType(Exception):
    pass


def convert(value, ty):
    """A payload value as a cell of a column of type `ty`, as `lake` converts it."""
    if value is None:
        return None
    if ty == "varchar":
        return value if isinstance(value, str) else compact(value)
    if ty == "bigint":
        if isinstance(value, int) and not isinstance(value, bool) and I64[0] <= value <= I64[1]:
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
    elif ty == "double":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
    elif ty == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif ty == "timestamptz":
        if isinstance(value, str):
            micros = parse_timestamp(value)
            if micros is not None:
                return micros
    text = compact(value)
    raise WrongType(f"expected {ty}, got {text[:60] + '…' if len(text) > 60 else text}")


def now_micros():
    return time.time_ns() // 1000


def open_catalog(warehouse):
    from pyiceberg.catalog.sql import SqlCatalog
    warehouse = Path(warehouse).resolve()
    (warehouse / "warehouse").mkdir(parents=True)
    catalog = SqlCatalog("bench", uri=f"sqlite:///{warehouse}/catalog.db", warehouse=f"file://{warehouse}/warehouse")
    return catalog


def create_table(catalog, name, schema):
    namespace = name.split(".")[0]
    if (namespace,) not in catalog.list_namespaces():
        catalog.create_namespace(namespace)
    return catalog.create_table(name, schema=schema)


# The coordinate columns `lake` gives a row of each source kind, and its `_record_id`.
FILE_COORDINATES = [("_path", pa.string()), ("_line", pa.int64())]
KAFKA_COORDINATES = [("_topic", pa.string()), ("_kafka_partition", pa.int32()), ("_offset", pa.int64()), ("_key", pa.string())]


def record_id(coordinates):
    if len(coordinates) == 2:
        return f"{coordinates[0]}:{coordinates[1]}"  # path:line
    return f"{coordinates[0]}/{coordinates[1]}/{coordinates[2]}"  # topic/partition/offset


class Sink:
    """Record-by-record sink: parse, route dead letters, append batches of good rows. Records
    come as (raw bytes, coordinates, received_at); `coordinates` match `coordinate_fields`."""

    def __init__(self, catalog, table, coordinate_fields):
        self.catalog, self.name, self.coordinate_fields = catalog, table, coordinate_fields
        self.source = table.split(".")[-1]
        self.columns = None  # [(name, type)], from the first batch
        self.rows_table = self.errors_table = None
        self.records, self.dead = [], []

    def infer_columns(self, records):
        types = {}
        for value, _, _ in records:
            for key, v in value.items():
                if key in METADATA_COLUMNS:
                    continue
                t = infer(v)
                if key not in types:
                    types[key] = t
                elif types[key] is None or t is None:
                    types[key] = types[key] or t
                else:
                    types[key] = widen(types[key], t)
        self.columns = [(k, t or "varchar") for k, t in types.items()]
        fields = [pa.field(k, ARROW[t]) for k, t in self.columns]
        fields += [pa.field("_extra", pa.string()), pa.field("_source", pa.string()), pa.field("_record_id", pa.string())]
        fields += [pa.field(name, ty) for name, ty in self.coordinate_fields]
        fields += [pa.field("_event_type", pa.string()), pa.field("_received_at", TS), pa.field("_loaded_at", TS)]
        self.schema = pa.schema(fields)

    def flush(self):
        """Appends the dead letters, then the rows, of one batch."""
        records, dead = self.records, self.dead
        self.records, self.dead = [], []
        loaded_at = now_micros()
        if records and self.columns is None:
            self.infer_columns(records)
        cells = [[] for _ in self.columns or []]
        extra, coordinates, received = [], [], []
        names = {name for name, _ in self.columns or []}
        for value, at, received_at in records:
            row = []
            for name, ty in self.columns:
                try:
                    row.append(convert(value.get(name), ty))
                except WrongType as e:
                    dead.append(("type", f"field `{name}`: {e}", compact(value), at, received_at))
                    row = None
                    break
            if row is None:
                continue
            for column, cell in zip(cells, row):
                column.append(cell)
            rest = {k: v for k, v in value.items() if k not in names}
            extra.append(compact(rest) if rest else None)
            coordinates.append(at)
            received.append(received_at)
        if dead:
            dead.sort(key=lambda d: d[3])
            n = len(dead)
            columns = {
                "error_type": pa.array([d[0] for d in dead], pa.string()),
                "error_message": pa.array([d[1] for d in dead], pa.string()),
                "raw_payload": pa.array([d[2] for d in dead], pa.string()),
                "_source": pa.array([self.source] * n, pa.string()),
                "_record_id": pa.array([record_id(d[3]) for d in dead], pa.string()),
            }
            for i, (name, ty) in enumerate(self.coordinate_fields):
                columns[name] = pa.array([d[3][i] for d in dead], ty)
            columns["_received_at"] = pa.array([d[4] for d in dead], TS)
            columns["_loaded_at"] = pa.array([loaded_at] * n, TS)
            batch = pa.table(columns)
            if self.errors_table is None:
                self.errors_table = create_table(self.catalog, self.name + "__errors", batch.schema)
            self.errors_table.append(batch)
        if coordinates:
            n = len(coordinates)
            arrays = [pa.array(column, ARROW[ty]) for column, (_, ty) in zip(cells, self.columns)]
            arrays += [pa.array(extra, pa.string()), pa.array([self.source] * n, pa.string()),
                       pa.array([record_id(at) for at in coordinates], pa.string())]
            arrays += [pa.array([at[i] for at in coordinates], ty) for i, (_, ty) in enumerate(self.coordinate_fields)]
            arrays += [pa.array([None] * n, pa.string()), pa.array(received, TS), pa.array([loaded_at] * n, TS)]
            batch = pa.Table.from_arrays(arrays, schema=self.schema)
            if self.rows_table is None:
                self.rows_table = create_table(self.catalog, self.name, self.schema)
            self.rows_table.append(batch)

    def add(self, raw, at, received_at):
        """One record: a row of the next batch, or a dead letter. Returns the rows waiting."""
        if not raw.strip():
            return len(self.records)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            self.dead.append(("parse", f"invalid UTF-8: {e}", raw.decode("utf-8", "replace"), at, received_at))
            return len(self.records)
        try:
            value = json.loads(text)
        except ValueError as e:
            self.dead.append(("parse", f"invalid JSON: {e}", text, at, received_at))
            return len(self.records)
        if not isinstance(value, dict):
            self.dead.append(("parse", f"expected a JSON object, got {type(value).__name__}", text, at, received_at))
            return len(self.records)
        self.records.append((value, at, received_at))
        return len(self.records)

    def pending(self):
        return bool(self.records or self.dead)


def sink_file(catalog, table, path, batch_rows):
    """The file sink: each line of `path`, batches of `batch_rows` good rows."""
    sink, path = Sink(catalog, table, FILE_COORDINATES), str(path)
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if sink.add(raw.rstrip(b"\r\n"), (path, number), now_micros()) >= batch_rows:
                sink.flush()
    if sink.pending():
        sink.flush()


def sink_kafka(catalog, table, url, batch_rows):
    """A confluent-kafka consumer as a team writes one: every partition of the topic from its
    beginning, `consume` in chunks of 10,000 messages, an append of `batch_rows` good rows at a
    time, then a synchronous offset commit (at least once). It stops once every partition is read
    up to the high watermark it had at the start."""
    from confluent_kafka import Consumer, TopicPartition
    brokers, topic = url.removeprefix("kafka://").split("/", 1)
    # The fetch settings lake uses (src/ingest/kafka.rs): no 1 s pause after the local queue fills.
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"bench-sink-{time.time_ns()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest", "enable.partition.eof": False,
                         "fetch.queue.backoff.ms": 10})
    partitions = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions}
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    left = {p for p, end in ends.items() if end > 0}
    sink = Sink(catalog, table, KAFKA_COORDINATES)
    while left:
        for message in consumer.consume(num_messages=10000, timeout=1.0):
            if message.error():
                raise RuntimeError(f"Kafka: {message.error()}")
            partition, offset = message.partition(), message.offset()
            key = message.key()
            kind, ms = message.timestamp()
            received_at = ms * 1000 if kind and ms >= 0 else now_micros()
            at = (topic, partition, offset, key.decode("utf-8", "replace") if key is not None else None)
            if sink.add(message.value() or b"", at, received_at) >= batch_rows:
                sink.flush()
                consumer.commit(asynchronous=False)
            if offset + 1 >= ends[partition]:
                left.discard(partition)
    if sink.pending():
        sink.flush()
        consumer.commit(asynchronous=False)
    consumer.close()


def produce(path, url, partitions):
    """Creates the topic with `partitions` partitions and writes each line of `path` (empty lines
    too, as empty messages are records) as one message without a key. Prints the count."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    brokers, topic = url.removeprefix("kafka://").split("/", 1)
    admin = AdminClient({"bootstrap.servers": brokers})
    for future in admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)]).values():
        future.result(timeout=60)
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 20, "batch.size": 1_000_000,
                         "message.max.bytes": 10_000_000, "queue.buffering.max.messages": 1_000_000})
    sent = 0
    with open(path, "rb") as f:
        for raw in f:
            while True:
                try:
                    producer.produce(topic, raw.rstrip(b"\r\n"))
                    break
                except BufferError:
                    producer.poll(0.1)
            sent += 1
            if sent % 10000 == 0:
                producer.poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError("Kafka: messages left unsent after 120 s")
    print(json.dumps({"topic": topic, "partitions": partitions, "messages": sent}))


def fix_type(t):
    """A type Parquet and Iceberg can store: null → string, struct fields without children dropped."""
    if pa.types.is_null(t):
        return pa.string()
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, fix_type(f.type)) for f in t if not _empty_struct(f.type)])
    if pa.types.is_list(t):
        return pa.list_(fix_type(t.value_type))
    return t


def _empty_struct(t):
    return pa.types.is_struct(t) and t.num_fields == 0


def bulk(catalog, table, path):
    import pyarrow.json as pj
    data = pj.read_json(path)
    schema = pa.schema([pa.field(f.name, fix_type(f.type)) for f in data.schema if not _empty_struct(f.type)])
    data = data.select(schema.names).cast(schema)
    create_table(catalog, table, schema).append(data)


def count(catalog, name):
    """Rows of a table, read back (0 when it does not exist)."""
    from pyiceberg.exceptions import NoSuchTableError
    try:
        t = catalog.load_table(name)
    except NoSuchTableError:
        return 0
    first = t.schema().fields[0].name
    return len(t.scan(selected_fields=(first,)).to_arrow())


def clean(src, out):
    removed = lines = 0
    with open(src, "rb") as f, open(out, "wb") as o:
        for raw in f:
            lines += 1
            try:
                ok = isinstance(json.loads(raw), dict)
            except ValueError:
                ok = False
            if ok:
                o.write(raw if raw.endswith(b"\n") else raw + b"\n")
            else:
                removed += 1
    print(json.dumps({"lines": lines, "removed": removed}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("peer", choices=["sink", "bulk", "kafka", "clean", "produce"])
    parser.add_argument("file", help="the NDJSON file (kafka: kafka://host:port/topic)")
    parser.add_argument("out", nargs="?", help="clean: where to write the parsable lines; produce: kafka://host:port/topic")
    parser.add_argument("--partitions", type=int, default=1, help="produce: partitions of the new topic")
    parser.add_argument("--warehouse", help="sink/bulk: a new directory for the catalog and the warehouse")
    parser.add_argument("--table", default="raw.events")
    parser.add_argument("--batch", type=int, default=10000, help="sink: good rows per append")
    args = parser.parse_args()
    if args.peer == "clean":
        if not args.out:
            parser.error("clean needs IN and OUT")
        return clean(args.file, args.out)
    if args.peer == "produce":
        if not args.out:
            parser.error("produce needs FILE and kafka://host:port/topic")
        return produce(args.file, args.out, args.partitions)
    if not args.warehouse:
        parser.error(f"{args.peer} needs --warehouse")
    if args.peer == "kafka" and not args.file.startswith("kafka://"):
        parser.error("kafka reads kafka://host:port/topic")
    start = time.perf_counter()
    catalog = open_catalog(args.warehouse)
    if args.peer == "sink":
        sink_file(catalog, args.table, args.file, args.batch)
    elif args.peer == "kafka":
        sink_kafka(catalog, args.table, args.file, args.batch)
    else:
        bulk(catalog, args.table, args.file)
    seconds = time.perf_counter() - start
    data_bytes = sum(p.stat().st_size for p in Path(args.warehouse, "warehouse").rglob("*.parquet"))
    print(json.dumps({"peer": args.peer, "seconds": round(seconds, 3), "rows": count(catalog, args.table),
                      "dead_letters": count(catalog, args.table + "__errors"), "data_bytes": data_bytes}))


if __name__ == "__main__":
    sys.exit(main())
