"""Daily refresh of the shop_lakehouse `lake` project (Apache Airflow 2.9 or later).

Runs, one after the other, every day at 02:00:

    lake seed --log-format json                     load new seed files into the raw tables
    lake run --select staging+ --log-format json    build the staging layer and everything downstream
    lake test --log-format json                     run the data tests

Each task runs in the project directory, taken from the Airflow Variable
``lake_project_dir`` (set it with ``airflow variables set lake_project_dir /path/to/project``),
which is also exported to the command as ``LAKE_PROJECT_DIR``. The ``lake`` binary must be on
the worker's PATH. With ``--log-format json`` every log line is one JSON object, so the task
log can be shipped to a log store as is.

Exit codes: ``lake`` exits 0 when everything succeeded, 1 when a model or a data test failed,
2 on a project or usage error (bad lake.toml, YAML, template, or command line) and 3 on a
catalog or storage error. BashOperator fails the task on any non-zero exit code, so a failed
step stops the downstream steps; the task is retried once (useful for transient catalog or
storage errors, exit code 3).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator

# Rendered when each task runs (env, and since Airflow 2.9 cwd, are templated fields of
# BashOperator), so the Variable is read at run time, not every time the scheduler parses this file.
PROJECT_DIR = "{{ var.value.lake_project_dir }}"

default_args = {
    "owner": "data",
    "retries": 1,
    "retry_delay": timedelta(minutes=5),
}

with DAG(
    dag_id="lake_daily",
    description="Seed, build and test the shop_lakehouse Iceberg lakehouse with lake",
    schedule="0 2 * * *",
    start_date=datetime(2026, 11, 1),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["lake", "iceberg"],
) as dag:
    common = {
        "cwd": PROJECT_DIR,
        # append_env keeps the worker's environment (PATH, credentials for the catalog and
        # object store, ...) and adds these variables to it.
        "env": {"LAKE_PROJECT_DIR": PROJECT_DIR},
        "append_env": True,
    }

    seed = BashOperator(
        task_id="lake_seed",
        bash_command="lake seed --log-format json",
        **common,
    )

    run = BashOperator(
        task_id="lake_run",
        bash_command="lake run --select staging+ --log-format json",
        **common,
    )

    test = BashOperator(
        task_id="lake_test",
        bash_command="lake test --log-format json",
        **common,
    )

    seed >> run >> test
