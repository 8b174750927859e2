"""The `tierwise` command, run as an operator runs it (the installed entry point, in a process of its own) against
a database of its own: migrate, demo data, API keys, tier runs, statistics and offer-state refreshes, the spec."""

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
TIERWISE = Path(sys.executable).parent / "tierwise"
PEPPER = "cli-pepper-0123456789"
CUSTOMERS = 25


def _plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _command(scratch_database, data_dir: Path):
    """tierwise(*args) -> CompletedProcess, on an empty, migrated database of the test server."""
    env = {
        **os.environ,
        "TIERWISE_DATABASE_URL": _plain(scratch_database()),
        "TIERWISE_API_KEY_PEPPER": PEPPER,
        "TIERWISE_LOG_LEVEL": "WARNING",
        "TIERWISE_DATA_DIR": str(data_dir),
    }

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(TIERWISE), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)

    run.dsn = env["TIERWISE_DATABASE_URL"]
    run.migrated = _ok(run("migrate"))
    return run


@pytest.fixture(scope="module")
def tierwise(scratch_database, tmp_path_factory):
    return _command(scratch_database, tmp_path_factory.mktemp("tierwise-data"))


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


async def test_migrate_then_a_demo_bank_tiered_and_refreshed(tierwise):
    assert "database at head" in tierwise.migrated
    demo = json.loads(_ok(tierwise("demo", "--customers", str(CUSTOMERS), "--seed", "3")))
    assert demo["tier_run"]["status"] == "succeeded" and demo["tier_run"]["processed"] == CUSTOMERS
    assert set(demo["policies_created"]) == {"wealth", "lifecycle", "loyalty", "needs"}
    assert demo["benefits_created"] >= 10 and 0 < demo["benefit_uses"] <= CUSTOMERS
    # 25 customers add too few products to learn from: no version, the rules rank; said as such, no traceback
    assert demo["ranker_model"] == {
        "version": None,
        "skipped": "too few products added in the training window to learn from",
    }
    untrained = tierwise("train-ranker")
    assert untrained.returncode == 1 and "Traceback" not in untrained.stderr
    assert (
        untrained.stderr.splitlines()[0]
        == "tierwise: no model trained: too few products added in the training window to learn from"
    )
    run = json.loads(_ok(tierwise("tier-run", "--all")))
    assert (run["status"], run["processed"], run["total"]) == ("succeeded", CUSTOMERS, CUSTOMERS)
    one = json.loads(_ok(tierwise("tier-run", "--policy", "wealth")))
    assert (one["policy"], one["status"]) == ("wealth", "succeeded")
    assert tierwise("tier-run").returncode == 2  # neither --all nor --policy
    stats = json.loads(_ok(tierwise("refresh-stats")))
    assert stats and all(isinstance(value, int) for value in stats.values())
    everyone = json.loads(_ok(tierwise("refresh-offer-states", "--everyone")))
    assert everyone["offer_states_stored"] == CUSTOMERS
    assert json.loads(_ok(tierwise("refresh-offer-states")))["offer_states_stored"] == 0  # all still hold
    connection = await asyncpg.connect(tierwise.dsn)
    try:
        assert await connection.fetchval("SELECT count(*) FROM customer") == CUSTOMERS
        assert await connection.fetchval("SELECT count(*) FROM tier_run WHERE status = 'succeeded'") == 3
        assert await connection.fetchval("SELECT count(DISTINCT customer_id) FROM tier_assignment") == CUSTOMERS
    finally:
        await connection.close()


async def test_api_keys_are_created_listed_and_revoked(tierwise):
    key = _ok(tierwise("api-keys", "create", "--name", "core-feed", "--role", "integration")).strip()
    assert key.startswith("tw_") and len(key) > 40
    listed = _ok(tierwise("api-keys", "list"))
    row = next(line.split("\t") for line in listed.splitlines() if "\tcore-feed\t" in line)
    assert row[2] == "integration" and row[3] == f"tw_{key.split('_')[1]}_…" and row[-1] == "active"
    assert key not in listed
    assert _ok(tierwise("api-keys", "revoke", row[0])).strip() == f"revoked {row[0]}"
    assert "\tcore-feed\t" not in _ok(tierwise("api-keys", "list"))
    connection = await asyncpg.connect(tierwise.dsn)
    try:
        assert await connection.fetchval("SELECT revoked_at IS NOT NULL FROM api_key WHERE name = 'core-feed'")
    finally:
        await connection.close()


def test_openapi_writes_the_exported_spec(tierwise, tmp_path):
    target = tmp_path / "spec.json"
    _ok(tierwise("openapi", "--output", str(target)))
    assert target.read_text() == (ROOT / "openapi" / "openapi.json").read_text()


async def test_the_demo_bank_trains_and_serves_the_learned_ranker(scratch_database, tmp_path):
    """The demo bank's history is enough to learn from: /docs' ranker operations and the scored offer states have
    a model to show, with no `tierwise train-ranker` first."""
    tierwise = _command(scratch_database, tmp_path)
    demo = json.loads(_ok(tierwise("demo", "--customers", "150", "--seed", "3")))
    assert demo["ranker_model"]["version"] == 1 and demo["ranker_model"]["serving"] is True
    assert 0 < demo["ranker_model"]["map7"] <= 1
    assert "\tserving\t" in _ok(tierwise("ranker-models", "list"))
    assert json.loads(_ok(tierwise("refresh-offer-states", "--everyone")))["offer_states_stored"] == 150
    connection = await asyncpg.connect(tierwise.dsn)
    try:
        scored = await connection.fetchval(
            "SELECT count(*) FROM customer_offer_state WHERE ranker_version = 1 AND cardinality(ranker_products) > 0"
        )
    finally:
        await connection.close()
    assert scored > 0
    assert "ranker_model" not in json.loads(_ok(tierwise("demo", "--customers", "5", "--no-ranker")))
