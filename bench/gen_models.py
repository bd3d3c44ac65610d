"""Writes a project of N SQL models to DIR: python3 bench/gen_models.py DIR N (see compile.sh)."""
import os
import sys

root, n = sys.argv[1], int(sys.argv[2])
os.makedirs(f"{root}/models/staging", exist_ok=True)
os.makedirs(f"{root}/models/marts", exist_ok=True)
with open(f"{root}/lake.toml", "w") as f:
    f.write('name = "gen"\n')
# Five macro files of four macros each; every model calls one.
os.makedirs(f"{root}/macros", exist_ok=True)
for k in range(5):
    with open(f"{root}/macros/m{k}.sql", "w") as f:
        for j in range(4):
            f.write(f"{{% macro plus_{k}_{j}(col) %}}{{{{ col }}}} + {j}{{% endmacro %}}\n")
with open(f"{root}/models/sources.yml", "w") as f:
    f.write("sources:\n  - name: raw\n    tables:\n      - name: events\n")


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
        head = "{{ config(materialized='incremental', watermark='seq') }}\n"
        body = f"select * from (\n{body}\n) t\n{{% if is_incremental() %}}where seq > {{{{ watermark }}}}{{% endif %}}"
    else:
        head = ""
    with open(f"{root}/models/{layer}/{name(i)}.sql", "w") as f:
        f.write(head + body + "\n")
