"""A `tierwise` command pointed at a database without the Tierwise schema (another data folder, a new server, a
typo in the URL) says which database it tried and what to do, exits 1, shows no traceback and creates nothing."""

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import make_url

from app.core.embedded import database_exists
from app.core.migrations import upgrade_to_head

ROOT = Path(__file__).resolve().parents[1]


def _tierwise(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("TIERWISE_DATABASE_URL", "TIERWISE_DATA_DIR")}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env={**base, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def test_another_data_folder_is_named_and_left_empty(tmp_path):
    result = _tierwise("api-keys", "list", TIERWISE_DATA_DIR=str(tmp_path / "elsewhere"))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"no Tierwise database in the data folder {tmp_path / 'elsewhere'}" in result.stderr
    assert "tierwise migrate" in result.stderr and "TIERWISE_DATA_DIR" in result.stderr
    assert not (tmp_path / "elsewhere" / "pgdata").exists()


def test_a_database_without_the_schema_is_named_with_what_to_do(scratch_database):
    database = scratch_database()
    url = _plain(database)
    result = _tierwise("api-keys", "create", "--name", "x", "--role", "app", TIERWISE_DATABASE_URL=url)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"no Tierwise schema in {make_url(url).render_as_string(hide_password=True)}" in result.stderr
    assert "run `tierwise migrate`" in result.stderr
    upgrade_to_head(database)
    created = _tierwise("api-keys", "create", "--name", "x", "--role", "app", TIERWISE_DATABASE_URL=url)
    assert created.returncode == 0 and created.stdout.startswith("tw_"), created.stderr


def test_a_database_that_does_not_exist_is_not_created(scratch_database):
    url = make_url(_plain(scratch_database())).set(database="tierwise_no_such_db_7f3a").render_as_string(False)
    result = _tierwise("api-keys", "revoke", "1", TIERWISE_DATABASE_URL=url)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "no Tierwise schema in" in result.stderr and "tierwise_no_such_db_7f3a" in result.stderr
    assert not database_exists(url)


def test_an_unreachable_server_is_named():
    result = _tierwise("api-keys", "list", TIERWISE_DATABASE_URL="postgresql://postgres@127.0.0.1:1/tierwise")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "cannot reach postgresql://postgres@127.0.0.1:1/tierwise" in result.stderr
