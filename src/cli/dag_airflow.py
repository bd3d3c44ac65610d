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

# Passed to every task.
COMMON = {
    "cwd": PROJECT_DIR,
    # append_env keeps the worker's environment (PATH, credentials for the catalog and
    # object store, ...) and adds these variables to it.
    "env": {"LAKE_PROJECT_DIR": PROJECT_DIR},
    "append_env": True,
    # lake never exits 99; without this, BashOperator would turn exit 99 into "skipped".
    "skip_on_exit_code": None,
}
