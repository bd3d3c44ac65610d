"""Writes a project of N SQL models to DIR: python3 bench/gen_models.py DIR N [--dbt] (bench/run.sh compile times it against dbt).

With --dbt, the same project for dbt-duckdb (bench/run.sh compile): the same models, macros,
refs, sources and materializations (table unless the model says otherwise, as in lake), with
dbt_project.yml and profiles.yml (a DuckDB file in
DIR) instead of lake.toml. The only difference in the SQL is the incremental filter: lake's
`watermark='seq'` config and `{{ watermark }}` become dbt's usual
`where seq > (select max(seq) from {{ this }})`.
"""
import os
import sys

args = [a for a in sys.argv[1:] if a != "--dbt"]
dbt = "--dbt" in sys.argv[1:]
root, n = args[0], int(args[1])
os.makedirs(f"{root}/models/staging", exist_ok=True)
os.makedirs(f"{root}/models/marts", exist_ok=True)
if dbt:
    with open(f"{root}/dbt_project.yml", "w") as f:
        f.write("name: gen\nversion: '1.0'\nconfig-version: 2\nprofile: gen\n"
                "model-paths: [models]\nmacro-paths: [macros]\n"
                "flags:\n  send_anonymous_usage_stats: false\n  use_colors: false\n"
                # lake's default materialization (dbt's is view)
                "models:\n  gen:\n    +materialized: table\n")
    with open(f"{root}/profiles.yml", "w") as f:
        f.write("gen:\n  target: bench\n  outputs:\n    bench:\n      type: duckdb\n      path: gen.duckdb\n      threads: 2\n")
else:
    with open(f"{root}/lake.toml", "w") as f:
        f.write('name = "gen"\n')
# Five macro files of four macros each; every model calls one.
os.makedirs(f"{root}/macros", exist_ok=True)
for k in range(5):
    with open(f"{root}/macros/m{k}.sql", "w") as f:
        for j in range(4):
            f.write(f"{{% macro plus_{k}_{j}(col) %}}{{{{ col }}}} + {j}{{% endmacro %}}\n")
with open(f"{root}/models/sources.yml", "w") as f:
    f.write(("version: 2\n" if dbt else "") + "sources:\n  - name: raw\n    tables:\n      - name: events\n")


def name(i):
    return f"m{i:05d}"


for i in range(n):
    layer = "staging" if i < n // 2 else "marts"
    if i == 0:
        body = "select 1 as id, 0 as v, 0 as seq from {{ source('raw', 'events') }}"
    else:
        parents = sorted({i - 1, i // 3})
        refs = [f"select id, {{{{ plus_{i % 5}_{i % 4}('v') }}}} as v, seq from {{{{ ref('{name(p)}') }}}}" for p in parents]
        body = "\nunion all\n".join(refs)
    if i % 50 == 25:
        head = "{{ config(materialized='ephemeral') }}\n"
    elif i % 10 == 5:
        if dbt:
            head = "{{ config(materialized='incremental') }}\n"
            cond = "where seq > (select max(seq) from {{ this }})"
        else:
            head = "{{ config(materialized='incremental', watermark='seq') }}\n"
            cond = "where seq > {{ watermark }}"
        body = f"select * from (\n{body}\n) t\n{{% if is_incremental() %}}{cond}{{% endif %}}"
    else:
        head = ""
    with open(f"{root}/models/{layer}/{name(i)}.sql", "w") as f:
        f.write(head + body + "\n")
