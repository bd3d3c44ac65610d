"""Checks of bench/run.sh models: the demo's SQL models built by lake and by dbt-duckdb hold the same rows.

  models_check.py lake LAKE_BIN PROJECT_DIR          fingerprints of lake's tables (JSON)
  models_check.py dbt DUCKDB_FILE                    fingerprints of dbt's tables (JSON)
  models_check.py export LAKE_BIN PROJECT_DIR DIR    lake's tables to DIR/<schema>.<model>.parquet
  models_check.py diff DUCKDB_FILE DIR               rows of each model in one and not the other
                                                     (JSON: {model: [lake_only, dbt_only]})
  models_check.py raw DIR                            rows of DIR/<table>/*.parquet (JSON)
  models_check.py results RUN_RESULTS_JSON           elapsed seconds, models run (one line)

A fingerprint is the row count and a few sums and counts of lake's columns, as text: equal
fingerprints mean the same rows out, near enough to catch a translation that drifted; `diff`
compares every column (but _staged_at, the time of the build, and stg_hubspot_contacts._raw_id,
the event a tie on occurred_at picks) with EXCEPT ALL both ways.
"""
import json
import os
import subprocess
import sys
from decimal import Decimal

# model -> expressions over lake's columns, the same SQL in DataFusion (lake) and DuckDB.
MODELS = {
    "staging.stg_shopify_orders": ["count(distinct customer_id)", "sum(total_amount)", "sum(line_item_count)"],
    "staging.stg_shopify_customers": ["count(distinct email)", "count(distinct phone)", "sum(length(last_name))"],
    "staging.stg_stripe_charges": ["sum(amount)", "sum(amount_refunded)", "count(failure_code)"],
    "staging.stg_stripe_customers": ["count(distinct last_name)", "count(distinct phone)", "sum(length(email))"],
    "staging.stg_hubspot_contacts": ["count(distinct email)", "count(distinct lifecycle_stage)", "sum(length(phone))"],
    "analytics.order_summary": ["sum(orders)", "sum(net_revenue)", "sum(line_items)"],
    "analytics.payment_metrics": ["sum(charges)", "sum(volume)", "sum(refunded)"],
    "marts.sales_dashboard_daily": ["sum(orders)", "sum(payment_volume)", "sum(net_revenue)"],
}
SKIP = {"_staged_at"}
SKIP_IN = {"staging.stg_hubspot_contacts": {"_raw_id"}}
RAW = ["shopify_orders", "shopify_customers", "stripe_charges", "stripe_customers", "hubspot_contacts"]


def query():
    parts = []
    for model, exprs in MODELS.items():
        cols = ", ".join(f"cast({e} as varchar)" for e in exprs)
        parts.append(f"select '{model}' as model, cast(count(*) as varchar) as n, {cols} from {model}")
    return "\nunion all\n".join(parts)


def norm(value):
    """One spelling per number ('12.50' and '12.5', '3' and '3.0'): Decimal, normalized."""
    if value is None or value == "":
        return None
    try:
        d = Decimal(str(value))
    except ArithmeticError:
        return str(value)
    return str(int(d)) if d == d.to_integral_value() else str(d.normalize())


def duck(path=None):
    import duckdb
    con = duckdb.connect(path, read_only=path is not None) if path else duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    return con


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode in ("lake", "dbt"):
        # A failed query prints {"error": ...}: it matches no fingerprint, so the run fails.
        try:
            if mode == "lake":
                lake, project = args
                out = subprocess.run([lake, "sql", query(), "--format", "csv"], cwd=project, check=True,
                                     capture_output=True, text=True)
                import csv, io
                rows = list(csv.reader(io.StringIO(out.stdout)))[1:]
            else:
                rows = duck(args[0]).execute(query()).fetchall()
            print(json.dumps({r[0]: [norm(v) for v in r[1:]] for r in rows}, sort_keys=True))
        except (subprocess.CalledProcessError, Exception) as e:
            detail = getattr(e, "stderr", None) or str(e)
            print(json.dumps({"error": detail.strip().splitlines()[-1] if detail.strip() else repr(e)}))
    elif mode == "export":
        lake, project, folder = args[0], args[1], os.path.abspath(args[2])
        for model in MODELS:
            subprocess.run([lake, "sql", f"select * from {model}", "--out", f"{folder}/{model}.parquet"],
                           cwd=project, check=True, stdout=subprocess.DEVNULL)
    elif mode == "diff":
        con = duck(args[0])
        folder = args[1]
        result = {}
        for model in MODELS:
            lake_file = f"'{folder}/{model}.parquet'"
            skip = SKIP | SKIP_IN.get(model, set())
            cols = [r[0] for r in con.execute(f"describe select * from {lake_file}").fetchall() if r[0] not in skip]
            sel = ", ".join(f'"{c}"' for c in cols)
            lake_only = con.execute(f"select count(*) from (select {sel} from {lake_file} except all select {sel} from {model})").fetchone()[0]
            dbt_only = con.execute(f"select count(*) from (select {sel} from {model} except all select {sel} from {lake_file})").fetchone()[0]
            result[model] = [lake_only, dbt_only]
        print(json.dumps(result, sort_keys=True))
    elif mode == "raw":
        con = duck()
        print(json.dumps({t: con.execute(f"select count(*) from read_parquet('{args[0]}/{t}/*.parquet', union_by_name = true)").fetchone()[0]
                          for t in RAW}, sort_keys=True))
    elif mode == "results":
        r = json.load(open(args[0]))
        ran = sum(1 for n in r["results"] if n.get("status") not in ("skipped",) and n.get("kind", "model") == "model")
        print(f"{r['elapsed_time']:.2f} {ran}")
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
