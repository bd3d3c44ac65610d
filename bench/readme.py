#!/usr/bin/env python3
"""The README's performance figures, generated from bench/run.sh's results files.

    python3 bench/readme.py --from bench/results/2026-12-04-2.md [MORE.md ...]
    python3 bench/readme.py --check

README.md marks each generated block with a comment naming the section of bench/run.sh's
output it shows and the results file it comes from:

    <!-- bench: models bench/results/2026-12-04-2.md -->
    ...generated...
    <!-- /bench -->

`--from` points every block whose section one of the given files holds at that file (a later
file wins) and regenerates every block; `--check` regenerates the blocks from the files they
name and exits 1 when README.md differs (CI runs it, so a hand-edited figure or a results
file that no longer says what the README says fails the build). Sections: models, compile,
resolve, quality, ingest, kafka, merge, pipeline (the body of bench/run.sh's section, verbatim)
and summary (the performance issue's acceptance targets, computed from the tables of the
ingest, kafka, models and compile blocks; it names no file of its own).
"""

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# bench/run.sh's section headings, by the name a README block uses.
HEADINGS = {
    "models": "## Model builds",
    "compile": "## Compile",
    "resolve": "## Entity resolution",
    "quality": "### Quality on data",
    "ingest": "## Ingest: NDJSON files",
    "kafka": "## Ingest: a Kafka topic",
    "merge": "## Merge",
    "pipeline": "## Pipeline",
}
BLOCK = re.compile(r"<!-- bench: (\w+)(?: (\S+))? -->\n.*?<!-- /bench -->", re.S)


class Results:
    """One results file: its header facts and its sections' bodies."""

    def __init__(self, path):
        self.path = path
        text = (ROOT / path).read_text()
        self.facts = dict(re.findall(r"^- (commit|mode|machine|peers|lake): (.*)$", text, re.M))
        self.sections = {}
        lines = text.splitlines()
        starts = [i for i, l in enumerate(lines) if l.startswith("## ") or l.startswith("### ") or l.startswith("Load average at the end")]
        for n, i in enumerate(starts):
            for name, heading in HEADINGS.items():
                if lines[i].startswith(heading):
                    end = starts[n + 1] if n + 1 < len(starts) else len(lines)
                    self.sections[name] = "\n".join(lines[i + 1:end]).strip()

    def source(self):
        return (f"<sub>From `{self.path}`: commit {self.facts.get('commit', '?')}, {self.facts.get('mode', '?')}; "
                f"{self.facts.get('machine', '?')}; peers: {self.facts.get('peers', '?')}.</sub>")


def table(body, first_header):
    """The rows of the Markdown table in body whose first header cell is first_header, as dicts."""
    lines = body.splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_header:
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append(dict(zip(cells, (c.strip() for c in row.strip().strip("|").split("|")))))
            return rows
    return []


def num(text):
    return float(text.replace(",", "").rstrip("x"))


def summary(found):
    """The performance issue's acceptance targets against the figures of the other blocks."""
    out = ["| target | measured | holds |", "|---|---|---|"]

    def row(target, measured, holds):
        out.append(f"| {target} | {measured} | {'yes' if holds else '**no**'} |")

    if "ingest" in found:
        rows = table(found["ingest"].sections["ingest"], "payload")
        for kind in dict.fromkeys(r["payload"] for r in rows):
            lake = next(r for r in rows if r["payload"] == kind and r["tool"] == "lake")
            sink = next(r for r in rows if r["payload"] == kind and r["tool"] == "Python sink")
            bulk = next(r for r in rows if r["payload"] == kind and r["tool"] == "PyIceberg bulk")
            row(f"NDJSON file ingest of {lake['events']} {kind} payloads ({lake['MB']} MB): ≥ 5x the Python sink's events/s",
                f"{sink['lake/peer events/s']} ({lake['events/s']} against {sink['events/s']} events/s)", num(sink["lake/peer events/s"]) >= 5)
            row(f"the same: ≥ 1x PyIceberg's bulk best case", f"{bulk['lake/peer events/s']} ({bulk['events/s']} events/s)",
                num(bulk["lake/peer events/s"]) >= 1)
        peak = max(rows, key=lambda r: num(r["MB"]) if r["tool"] == "lake" else -1)
        row("peak memory bounded on a 3 GB file: under 1 GiB (lake holds two batches of at most 10,000 records or 64 MiB)",
            f"{peak['peak RSS MiB']} MiB on {peak['MB']} MB of {peak['payload']} payloads", num(peak["peak RSS MiB"]) < 1024)
    if "kafka" in found:
        rows = [r for r in table(found["kafka"].sections["kafka"], "payload") if r["tool"] != "lake"]
        worst = min(rows, key=lambda r: num(r["lake/sink events/s"]))
        row("Kafka ingest of the same payloads: ≥ 5x a confluent-kafka consumer appending 50,000-row batches",
            f"{min(num(r['lake/sink events/s']) for r in rows):.2f}x to {max(num(r['lake/sink events/s']) for r in rows):.2f}x "
            f"over {len(rows)} topics (lowest: {worst['payload']}, {worst['partitions']} partition(s))",
            all(num(r["lake/sink events/s"]) >= 5 for r in rows))
    if "models" in found:
        rows = table(found["models"].sections["models"], "people")
        biggest = max(rows, key=lambda r: num(r["people"]))["people"]
        at = [r for r in rows if r["people"] == biggest]
        full = next(r for r in at if r["step"] == "full build" and r["tool"] == "dbt")
        row(f"full build ≤ 0.5x dbt-duckdb at 1M orders", f"{full['lake/dbt wall']}x at {full['orders']} orders",
            num(full["lake/dbt wall"]) <= 0.5)
        noop = max(num(r["median s"]) for r in rows if r["step"] == "nothing new" and r["tool"] == "lake")
        row("no-op run < 0.5 s", f"{noop:.2f} s at most", noop < 0.5)
    if "compile" in found:
        rows = table(found["compile"].sections["compile"], "models")
        big = max((r for r in rows if r["command"] == "`lake compile`"), key=lambda r: num(r["models"]))
        again = next((r for r in rows if r["models"] == big["models"] and r["command"] == "`lake compile`, again"), None)
        measured = f"{big['median s']} s into an empty target/"
        if big.get("kernel s"):
            measured += f" ({big['kernel s']} s of CPU in the kernel)"
        if again:
            measured += f"; {again['median s']} s again, target/ present"
        row(f"{big['models']}-model compile < 1 s", measured, num(big["median s"]) < 1)
    files = sorted({res.path for res in found.values()})
    out.append("")
    out.append("<sub>Computed from " + ", ".join(f"`{f}`" for f in files) + ".</sub>")
    return "\n".join(out)


def render(text, cache):
    found = {}

    def block(m):
        name, path = m.group(1), m.group(2)
        if name == "summary":
            return m.group(0)  # filled in once every other block is known
        if name not in HEADINGS or not path:
            sys.exit(f"README.md: a bench block names an unknown section or no file: {m.group(0).splitlines()[0]}")
        res = cache.setdefault(path, Results(path) if (ROOT / path).exists() else None)
        if res is None or name not in res.sections:
            sys.exit(f"README.md: the {name} block names {path}, which has no {HEADINGS[name]!r} section")
        found[name] = res
        return f"<!-- bench: {name} {path} -->\n{res.sections[name]}\n\n{res.source()}\n<!-- /bench -->"

    text = BLOCK.sub(block, text)
    return BLOCK.sub(lambda m: f"<!-- bench: summary -->\n{summary(found)}\n<!-- /bench -->" if m.group(1) == "summary" else m.group(0), text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--from", dest="sources", nargs="+", default=[])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    text = README.read_text()
    cache = {}
    for path in args.sources:
        res = cache[path] = Results(path)
        for name in res.sections:
            text = re.sub(rf"<!-- bench: {name} \S+ -->", f"<!-- bench: {name} {path} -->", text)
    new = render(text, cache)
    if args.check:
        if new != README.read_text():
            sys.exit("README.md's performance figures differ from the bench/results files they name: "
                     "run `python3 bench/readme.py --from <results file>` (or fix the hand edit)")
        print("README.md's performance figures match their results files")
        return
    README.write_text(new)


if __name__ == "__main__":
    main()
