#!/usr/bin/env python3
"""Read every table of a lake project's embedded catalog with PyIceberg and with DuckDB's
iceberg extension, and print per-table statistics from each reader as JSON.

Usage: python3 scripts/reader_stats.py PROJECT_DIR

Output: {"pyiceberg": {table: stats}, "duckdb": {table: stats}} where stats are the row
count and, per column, the number of non-null values, of distinct values and (for numbers)
the sum. The integration tests compute the same with `lake sql` and compare, so both
readers must return the same rows as lake. Needs `pyiceberg[sql-sqlite,pyarrow]`, `duckdb`
and the `duckdb-extension-avro` / `duckdb-extension-iceberg` packages (installed by .ci/run).
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


def duckdb_connection():
    import duckdb

    con = duckdb.connect()
    for name in ["avro", "iceberg"]:
        module = importlib.import_module(f"duckdb_extension_{name}")
        path = glob.glob(
            os.path.join(os.path.dirname(module.__file__), "extensions", "*", f"{name}.duckdb_extension")
        )[0]
        con.execute(f"LOAD '{path}'")
    return con


def main() -> None:
    project = os.path.abspath(sys.argv[1])
    catalog = SqlCatalog(
        "lake",
        uri=f"sqlite:///{project}/.lake/catalog.db",
        warehouse=f"file://{project}/.lake/warehouse",
    )
    con = duckdb_connection()
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
