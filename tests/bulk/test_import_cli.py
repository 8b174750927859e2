"""`tierwise import-balances FILE` as an operator runs it, killed between two chunks and run again: it resumes
where it stopped, ends where an uninterrupted import ends, and a third run changes nothing."""

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
TIERWISE = Path(sys.executable).parent / "tierwise"
CUSTOMERS = 250
CHUNK = 100  # customer ids per chunk: ids 1-99, 100-199, 200-250


def _env(dsn: str) -> dict:
    return {
        **os.environ,
        "TIERWISE_DATABASE_URL": dsn,
        "TIERWISE_API_KEY_PEPPER": "cli-pepper-0123456789",
        "TIERWISE_LOG_LEVEL": "WARNING",
    }


def _run(env: dict, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([str(TIERWISE), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


async def _state(connection) -> list:
    return [
        tuple(row)
        for row in await connection.fetch(
            "SELECT c.external_id, h.product_code, h.balance, h.as_of, "
            "(SELECT array_agg(a.qualified_code ORDER BY a.policy_id) FROM tier_assignment a "
            " WHERE a.customer_id = c.id) AS tiers, "
            "(SELECT count(*) FROM tier_transition t WHERE t.customer_id = c.id) AS moves "
            "FROM customer c LEFT JOIN holding h ON h.customer_id = c.id ORDER BY 1, 2"
        )
    ]


async def test_a_killed_import_resumes_to_the_same_end(scratch_database, tmp_path):
    dsns = [make_url(scratch_database()).set(drivername="postgresql").render_as_string(False) for _ in range(2)]
    killed_env, reference_env = _env(dsns[0]), _env(dsns[1])
    for env in (killed_env, reference_env):
        _run(env, "migrate")
        _run(env, "demo", "--customers", str(CUSTOMERS), "--seed", "5", "--no-ranker")
    connection = await asyncpg.connect(dsns[0])
    try:
        customers = [row["external_id"] for row in await connection.fetch("SELECT external_id FROM customer")]
        today = date.today().isoformat()
        lines = [
            {"customer_id": customer, "product_code": code, "balance": f"{(i % 97 + 1) * 1000 * k}.00", "as_of": today}
            for i, customer in enumerate(customers)
            for code, k in (("savings_account", 1), ("balanced_fund", 30) if i % 3 else ("mortgage", 2))
        ]
        feed = tmp_path / "balances.ndjson"
        feed.write_text("".join(json.dumps(line) + "\n" for line in lines))

        # Hold a customer of the second chunk, so that the import stops there; kill it while it waits.
        blocker = await asyncpg.connect(dsns[0])
        blocked = await blocker.fetchval("SELECT min(id) FROM customer WHERE id >= $1", CHUNK)
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("SELECT 1 FROM customer WHERE id = $1 FOR UPDATE", blocked)
        args = ["import-balances", str(feed), "--chunk-size", str(CHUNK), "--workers", "1"]
        process = subprocess.Popen([str(TIERWISE), *args], env=killed_env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        try:
            waiting = 0
            for _ in range(3000):  # until the import's chunk waits for the held customer (pg_stat_activity)
                waiting = await connection.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query LIKE '%FOR NO KEY UPDATE%'"
                )
                if waiting or process.poll() is not None:
                    break
                await asyncio.sleep(0.05)
            assert waiting == 1
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        finally:
            await transaction.rollback()
            await blocker.close()
        stopped = await connection.fetchrow("SELECT status, customers, customers_done FROM holding_import")
        assert stopped["status"] == "merging" and 0 < stopped["customers_done"] < stopped["customers"]
        assert "chunk 1:" in process.stderr.read()

        resumed = _run(killed_env, *args)
        outcome = json.loads(resumed.stdout)
        assert "imported before" in resumed.stderr
        assert (outcome["status"], outcome["customers_done"]) == ("succeeded", len(customers))
        reference = json.loads(_run(reference_env, *args).stdout)
        assert reference["customers_done"] == len(customers)
        other = await asyncpg.connect(dsns[1])
        try:
            after_kill, uninterrupted = await _state(connection), await _state(other)
        finally:
            await other.close()
        assert after_kill == uninterrupted
        again = json.loads(_run(killed_env, *args).stdout)
        assert again["import"] == outcome["import"] and await _state(connection) == after_kill
    finally:
        await connection.close()
