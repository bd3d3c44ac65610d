"""Daily refresh of the shop_lakehouse `lake` project (Apache Airflow 3, or 2.9 and later).

Runs, one after the other, every day at 02:00:

    lake ingest --all --once --log-format json      land new events in the raw tables
    lake run --select staging+ --log-format json    build the staging layer and everything downstream
    lake test --log-format json                     run the data tests

Each task runs in the project directory, taken from the Airflow Variable
``lake_project_dir`` (set it with ``airflow variables set lake_project_dir /path/to/project``),
which is also exported to the command as ``LAKE_PROJECT_DIR``. The ``lake`` binary must be on
the worker's PATH. With ``--log-format json`` every log line is one JSON object, so the task
log can be shipped to a log store as is.

Exit codes: ``lake`` exits 0 when everything succeeded, 1 when a model or a data test failed,
2 on a project or usage error (bad lake.toml, YAML, template, or command line) and 3 when the
catalog or storage could not be reached or written. Any non-zero exit code fails the task, so
a failed step stops the steps after it (they end ``upstream_failed``). Only exit code 3 is
retried (twice, five minutes apart): an unreachable catalog or object store may come back,
while a failed model or test, or a broken project, fails the same way until someone fixes it,
so those fail the task at once, without retries.
"""

from __future__ import annotations

from datetime import datetime, timedelta

# Each name from where Airflow 3 keeps it, else from where Airflow 2 did.
try:
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:
    from airflow.operators.bash import BashOperator
try:
    from airflow.sdk import DAG
except ImportError:
    from airflow import DAG
try:
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
except ImportError:
    from airflow.exceptions import AirflowException, AirflowFailException

# Rendered when each task runs (env, and since Airflow 2.9 cwd, are templated fields of
# BashOperator), so the Variable is read at run time, not every time the scheduler parses this file.
PROJECT_DIR = "{{ var.value.lake_project_dir }}"

# `lake` exits 3 when the catalog or storage could not be reached or written: worth a retry.
RETRYABLE_EXIT_CODES = {3}


class LakeOperator(BashOperator):
    """A BashOperator for `lake` commands that retries only catalog/storage failures (exit 3).

    Any other failure (exit 1: a model, seed or test failed; exit 2: a project or usage error;
    a missing project directory) raises AirflowFailException, which fails the task without
    using its retries.
    """

    def execute(self, context):
        try:
            return super().execute(context)
        except AirflowException as err:
            process = self.subprocess_hook.sub_process
            code = process.returncode if process is not None else None
            if code in RETRYABLE_EXIT_CODES:
                raise
            raise AirflowFailException(f"{err} (not retried: only exit code 3 is)") from err


default_args = {
    "owner": "data",
    "retries": 2,
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
        # lake never exits 99; without this, BashOperator would turn exit 99 into "skipped".
        "skip_on_exit_code": None,
    }

    ingest = LakeOperator(
        task_id="lake_ingest",
        bash_command="lake ingest --all --once --log-format json",
        **common,
    )

    run = LakeOperator(
        task_id="lake_run",
        bash_command="lake run --select staging+ --log-format json",
        **common,
    )

    test = LakeOperator(
        task_id="lake_test",
        bash_command="lake test --log-format json",
        **common,
    )

    ingest >> run >> test
