mod polars_bridge;
