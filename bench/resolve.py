#!/usr/bin/env python3
"""Entity-resolution benchmark: `lake resolve` beside Splink (DuckDB backend) on the same data.

    python3 bench/resolve.py [RECORDS...]           (default: 100000 1000000)
    LAKE_BIN=path/to/lake python3 bench/resolve.py  (use that binary instead of building)

For each size it generates the seeded synthetic customers (scripts/gen_customers.py, about
1.8 records per person), then runs

  * `lake resolve` (release build) with its deterministic rules (`scoring = { method = "rules" }`),
  * `lake resolve` with its default settings (the probabilistic scoring),
  * Splink 5 probabilistic (EM-trained, its comparison library; bench/er_eval.py's setup), and
  * Splink 5 on DuckDB with the same rules as deterministic rules: the same normalization
    written in DuckDB SQL, the same blocking keys, the same Jaro-Winkler thresholds (names
    compared in either order), then Splink's connected-components clustering,

each in its own process, and reports wall time, records per second, peak resident memory
(the process's max RSS), the number of pairs compared, and pairwise precision, recall and
F1 against the known truth. Needs `pip install splink==5.0.0`.
"""

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import er_eval  # noqa: E402  (its Splink probabilistic script)
RECORDS_PER_PERSON = 1.82


def lake_binary():
    if os.environ.get("LAKE_BIN"):
        return os.environ["LAKE_BIN"]
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "lake"], cwd=ROOT, check=True)
    meta = json.loads(subprocess.check_output(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT))
    return str(Path(meta["target_directory"]) / "release" / "lake")


def run_measured(cmd, **kw):
    """Runs cmd; returns (seconds, max RSS in MiB, stdout)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, **kw)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{cmd[0]} failed:\n{out}")
    return seconds, usage.ru_maxrss / 1024, out


def score(clusters, truth):
    """Pairwise precision, recall and F1 of {record: cluster} against {record: person}."""
    pairs = lambda counts: sum(n * (n - 1) // 2 for n in counts.values())
    both = Counter((clusters[r], truth[r]) for r in truth)
    tp = pairs(both)
    predicted = pairs(Counter(clusters[r] for r in truth))
    actual = pairs(Counter(truth.values()))
    p, r = tp / predicted, tp / actual
    return p, r, 2 * p * r / (p + r)


SPLINK = r'''
import json, sys, duckdb, logging
from splink import DuckDBAPI, Linker, SettingsCreator
path, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
def run(sql):
    con.execute(sql).fetchall()
run("SET preserve_insertion_order = false")
# The normalization lake applies, in DuckDB SQL.
run(f"""
create table customers as
with raw as (select * from read_csv('{path}', all_varchar = true, header = true)),
e as (
  select *, lower(trim(email)) as e0 from raw
),
e2 as (
  select *,
    case when e0 like '%@%.%' then split_part(e0, '@', 1) end as local0,
    case when e0 like '%@%.%' then replace(split_part(e0, '@', 2), 'googlemail.com', 'gmail.com') end as domain
  from e
),
n as (
  select *,
    case when domain in ('gmail.com','outlook.com','hotmail.com','live.com','icloud.com','me.com','protonmail.com','proton.me','fastmail.com','yandex.ru')
         then split_part(local0, '+', 1) else local0 end as local1,
    regexp_replace(coalesce(phone, ''), '[^0-9+]', '', 'g') as p0
  from e2
)
select
  record_id as unique_id,
  true_id,
  case when local1 is null or local1 in ('none','noemail','no-email','noreply','no-reply','donotreply','do-not-reply','test','unknown','na','null','email')
            or domain in ('none.com','noemail.com','test.com') then null
       when domain = 'gmail.com' then replace(local1, '.', '') || '@' || domain
       else local1 || '@' || domain end as email,
  case
    when regexp_matches(p0, '^(\\+|00)') then nullif('+' || ltrim(ltrim(p0, '+'), '0'), '+')
    when length(p0) = 10 then '+1' || p0
    when length(p0) = 11 and p0 like '1%' then '+' || p0
  end as phone0,
  nullif(trim(regexp_replace(regexp_replace(lower(strip_accents(coalesce(first_name, ''))), '\\b(mr|mrs|ms|miss|dr|prof|jr|sr)\\b\.?', '', 'g'), '[^a-z ]', '', 'g')), '') as first_name,
  nullif(trim(regexp_replace(lower(strip_accents(coalesce(last_name, ''))), '[^a-z ]', '', 'g')), '') as last_name,
  coalesce(try_strptime(dob, '%Y-%m-%d'), try_strptime(dob, '%m/%d/%Y'), try_strptime(dob, '%d.%m.%Y'))::date::varchar as dob,
  nullif(upper(regexp_replace(case when regexp_matches(postcode, '^[0-9]{{5}}-[0-9]{{4}}$') then left(postcode, 5) else postcode end, '[^A-Za-z0-9]', '', 'g')), '') as postcode,
  nullif(trim(regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(lower(coalesce(address, '')),
     '\\bstreet\\b', 'st', 'g'), '\\bavenue\\b', 'ave', 'g'), '\\broad\\b', 'rd', 'g'), '\\blane\\b', 'ln', 'g'), '\\bdrive\\b', 'dr', 'g'), '[^a-z0-9 ]', '', 'g')), '') as address
from n
""")
# Placeholder phones (one digit repeated, or starting with a run like 123456) are null, as in lake.
run("""
update customers set phone0 = null
where phone0 is not null and (
  length(replace(substr(phone0, 3), substr(phone0, 3, 1), '')) = 0
  or regexp_matches(phone0, '^\\+1?(0?123456|987654)') or length(phone0) < 8)
""")
run("alter table customers rename column phone0 to phone")
name = lambda t: (f"((jaro_winkler_similarity(l.first_name, r.first_name) >= {t} and jaro_winkler_similarity(l.last_name, r.last_name) >= {t})"
                  f" or (jaro_winkler_similarity(l.first_name, r.last_name) >= {t} and jaro_winkler_similarity(l.last_name, r.first_name) >= {t}))")
rules = [
  "l.email = r.email",
  f"l.phone = r.phone and {name(0.88)}",
  f"l.postcode = r.postcode and {name(0.92)}",
  f"l.dob = r.dob and {name(0.92)}",
  f"l.address = r.address and {name(0.92)}",
]
settings = SettingsCreator(link_type="dedupe_only", blocking_rules_to_generate_predictions=rules, retain_intermediate_calculation_columns=False)
db_api = DuckDBAPI(connection=con)
linker = Linker(db_api.register("customers"), settings, log_level=logging.WARNING)
pairs = linker.inference.deterministic_link()
n_pairs = con.execute(f"select count(*) from {pairs.physical_name}").fetchall()[0][0]
clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(pairs)
run(f"copy (select unique_id as id, cluster_id as entity_id from {clusters.physical_name}) to '{out}' (header, delimiter ',')")
print(json.dumps({"matches": n_pairs}))
'''


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [100_000, 1_000_000]
    lake = lake_binary()
    work = Path(tempfile.mkdtemp(prefix="lake-resolve-bench-"))
    rules_config = work / "rules.toml"
    rules_config.write_text('[scoring]\nmethod = "rules"\n')
    (work / "splink_run.py").write_text(SPLINK)
    rows = []
    for size in sizes:
        data = work / f"customers_{size}.csv"
        people = int(size / RECORDS_PER_PERSON)
        subprocess.run([sys.executable, ROOT / "scripts/gen_customers.py", "--people", str(people), "--seed", "42", "--out", data], check=True)
        truth = {}
        with data.open(newline="", encoding="utf-8") as f:
            for rec in csv.DictReader(f):
                truth[rec["record_id"]] = rec["true_id"]
        records = len(truth)

        out_dir = work / f"lake_{size}"
        seconds, rss, out = run_measured([
            lake, "--log-format", "json", "resolve", "--input", str(data), "--id", "record_id",
            "--columns", "email=email,phone=phone,first_name=first_name,last_name=last_name,dob=dob,postcode=postcode,address=address",
            "--config", str(rules_config), "--output", str(out_dir)])
        stats = json.loads(out.strip().splitlines()[-1])
        with (out_dir / "clusters.csv").open() as f:
            clusters = {r["id"]: r["entity_id"] for r in csv.DictReader(f)}
        p, r, f1 = score(clusters, truth)
        rows.append(("lake resolve (rules)", records, seconds, rss, stats["comparisons"], stats["matches"], p, r, f1))

        out_dir = work / f"lake_fs_{size}"
        seconds, rss, out = run_measured([
            lake, "--log-format", "json", "resolve", "--input", str(data), "--id", "record_id",
            "--columns", "email=email,phone=phone,first_name=first_name,last_name=last_name,dob=dob,postcode=postcode,address=address",
            "--output", str(out_dir)])
        stats = json.loads(out.strip().splitlines()[-1])
        with (out_dir / "clusters.csv").open() as f:
            clusters = {r["id"]: r["entity_id"] for r in csv.DictReader(f)}
        p, r, f1 = score(clusters, truth)
        rows.append(("lake resolve (probabilistic, default)", records, seconds, rss, stats["comparisons"], stats["matches"], p, r, f1))

        # Splink's probabilistic setup, the same one bench/er_eval.py uses (EM-trained).
        (work / "splink_fs.py").write_text(er_eval.SPLINK)
        splink_out = work / f"splink_fs_{size}.csv"
        roles = "email,phone,first_name,last_name,dob,postcode,address"
        seconds, rss, _ = run_measured([sys.executable, str(work / "splink_fs.py"), str(data), roles, str(splink_out)])
        with splink_out.open() as f:
            clusters = {r["id"]: r["entity_id"] for r in csv.DictReader(f)}
        p, r, f1 = score(clusters, truth)
        # The pairs its blocking rules make, counted by Splink in a second run (not timed).
        _, _, out = run_measured([sys.executable, str(work / "splink_fs.py"), str(data), roles, str(splink_out), "count"])
        compared = json.loads(out.strip().splitlines()[-1])["comparisons"]
        rows.append(("Splink 5 (EM, probabilistic)", records, seconds, rss, compared, None, p, r, f1))

        splink_out = work / f"splink_{size}.csv"
        seconds, rss, out = run_measured([sys.executable, str(work / "splink_run.py"), str(data), str(splink_out)])
        matches = json.loads(out.strip().splitlines()[-1])["matches"]
        with splink_out.open() as f:
            clusters = {r["id"]: r["entity_id"] for r in csv.DictReader(f)}
        p, r, f1 = score(clusters, truth)
        rows.append(("Splink 5 + DuckDB (same rules)", records, seconds, rss, None, matches, p, r, f1))

    print()
    print("| engine | records | seconds | records/s | peak RSS MiB | pairs compared | matched pairs | precision | recall | F1 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, records, seconds, rss, compared, matches, p, r, f1 in rows:
        compared = f"{compared:,}" if compared is not None else "n/a"
        matches = f"{matches:,}" if matches is not None else "n/a"
        print(f"| {name} | {records:,} | {seconds:.1f} | {records / seconds:,.0f} | {rss:,.0f} | {compared} | {matches} | {p:.4f} | {r:.4f} | {f1:.4f} |")


if __name__ == "__main__":
    main()
