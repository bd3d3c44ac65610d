#!/usr/bin/env python3
"""Open a lake project's embedded catalog with PyIceberg and print per-table statistics as JSON.

Usage: python3 scripts/pyiceberg_stats.py PROJECT_DIR

For every table in every namespace: row count, column names, and per column the number of
non-null values, the number of distinct values and (for numbers) the sum. The integration
test computes the same with `lake sql` and compares, so PyIceberg must read the same rows.
"""
import decimal
import json
import os
import sys

import pyarrow.compute as pc
from pyiceberg.catalog.sql import SqlCatalog


def main() -> None:
    project = os.path.abspath(sys.argv[1])
    catalog = SqlCatalog(
        "lake",
        uri=f"sqlite:///{project}/.lake/catalog.db",
        warehouse=f"file://{project}/.lake/warehouse",
    )
    out = {}
    for ns in catalog.list_namespaces():
        for ident in catalog.list_tables(ns):
            table = catalog.load_table(ident)
            data = table.scan().to_arrow()
            cols = {}
            for name in data.column_names:
                col = data.column(name)
                non_null = len(col) - col.null_count
                distinct = len(pc.unique(col.drop_null())) if non_null else 0
                stats = {"non_null": non_null, "distinct": distinct}
                t = col.type
                if pa_is_number(t):
                    total = pc.sum(col).as_py()
                    stats["sum"] = None if total is None else round(float(total), 4)
                cols[name] = stats
            out[".".join(ident)] = {"rows": data.num_rows, "columns": cols}
    json.dump(out, sys.stdout, sort_keys=True)


def pa_is_number(t) -> bool:
    import pyarrow.types as pt

    return pt.is_integer(t) or pt.is_floating(t) or pt.is_decimal(t)


if __name__ == "__main__":
    decimal.getcontext().prec = 38
    main()
