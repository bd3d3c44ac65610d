#!/usr/bin/env python3
"""Read every table of a lake project's embedded catalog with PyIceberg and with DuckDB's
iceberg extension, and print per-table statistics from each reader as JSON.

Usage: python3 scripts/reader_stats.py PROJECT_DIR [CATALOG_JSON]

Without CATALOG_JSON the project's embedded SQLite catalog and local warehouse are read. With
it, another catalog: {"type": "sql" | "rest", "uri": ..., "warehouse": ..., "s3.endpoint": ...,
"s3.access-key-id": ..., "s3.secret-access-key": ..., "s3.region": ...} (PyIceberg catalog
properties); DuckDB then reads s3:// tables through its httpfs extension with the same keys.

Output: {"pyiceberg": {table: stats}, "duckdb": {table: stats}} where stats are the row
count and, per column, the number of non-null values, of distinct values and (for numbers)
the sum. The integration tests compute the same with `lake sql` and compare, so both
readers must return the same rows as lake. Needs `pyiceberg[sql-sqlite,sql-postgres,pyarrow]`,
`duckdb` and the `duckdb-extension-avro` / `-iceberg` / `-httpfs` packages (installed by .ci/run).
"""
import glob
import importlib
import json
import os
import sys

import pyarrow.compute as pc
import pyarrow.types as pt
from pyiceberg.catalog.sql import SqlCatalog


def arrow_stats(data):
    cols = {}
    for name in data.column_names:
        col = data.column(name)
        non_null = len(col) - col.null_count
        stats = {
            "non_null": non_null,
            "distinct": len(pc.unique(col.drop_null())) if non_null else 0,
        }
        t = col.type
        if pt.is_integer(t) or pt.is_floating(t) or pt.is_decimal(t):
            total = pc.sum(col).as_py()
            stats["sum"] = None if total is None else round(float(total), 4)
        cols[name] = stats
    return {"rows": data.num_rows, "columns": cols}


def duckdb_connection(props):
    import duckdb

    con = duckdb.connect()
    s3 = "s3.endpoint" in props
    for name in (["httpfs"] if s3 else []) + ["avro", "iceberg"]:
        module = importlib.import_module(f"duckdb_extension_{name}")
        path = glob.glob(
            os.path.join(os.path.dirname(module.__file__), "extensions", "*", f"{name}.duckdb_extension")
        )[0]
        con.execute(f"LOAD '{path}'")
    if s3:
        endpoint = props["s3.endpoint"]

        def quote(v):
            return "'" + str(v).replace("'", "''") + "'"

        con.execute(
            f"CREATE SECRET (TYPE s3, KEY_ID {quote(props['s3.access-key-id'])}, "
            f"SECRET {quote(props['s3.secret-access-key'])}, "
            f"REGION {quote(props.get('s3.region', 'us-east-1'))}, "
            f"ENDPOINT {quote(endpoint.split('://', 1)[-1])}, URL_STYLE 'path', "
            f"USE_SSL {str(endpoint.startswith('https://')).lower()})"
        )
    return con


def open_catalog(project, props):
    if not props:
        return SqlCatalog(
            "lake",
            uri=f"sqlite:///{project}/.lake/catalog.db",
            warehouse=f"file://{project}/.lake/warehouse",
        )
    props = dict(props)
    kind = props.pop("type")
    if kind == "rest":
        from pyiceberg.catalog.rest import RestCatalog

        return RestCatalog("lake", **props)
    return SqlCatalog("lake", **props)


def main() -> None:
    project = os.path.abspath(sys.argv[1])
    props = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    catalog = open_catalog(project, props)
    con = duckdb_connection(props)
    out = {"pyiceberg": {}, "duckdb": {}}
    for ns in catalog.list_namespaces():
        for ident in catalog.list_tables(ns):
            name = ".".join(ident)
            table = catalog.load_table(ident)
            out["pyiceberg"][name] = arrow_stats(table.scan().to_arrow())
            location = table.metadata_location.removeprefix("file://")
            data = con.execute(f"SELECT * FROM iceberg_scan('{location}')").arrow()
            if hasattr(data, "read_all"):
                data = data.read_all()
            out["duckdb"][name] = arrow_stats(data)
    json.dump(out, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main()
