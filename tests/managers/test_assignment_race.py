"""Two assignment runs started at once, on separate connections that commit: the second waits for the first (seen
waiting on the run lock in pg_stat_activity), then finds everyone placed; no customer is assigned twice and no
manager goes past capacity."""

import asyncio
import uuid

import pytest
from sqlalchemy import text

from app.core.db import create_sessionmaker
from app.managers import service as managers_service
from tests.factories import delete_customers, inserting_customers

CUSTOMERS, CAPACITY = 5, 3


@pytest.fixture
async def population(engine):
    """A policy of its own with one tier, CUSTOMERS customers in it and two managers serving it, committed."""
    tag = uuid.uuid4().hex[:8]
    key = f"race{tag}"
    async with engine.begin() as conn:
        policy_id = await conn.scalar(
            text("INSERT INTO tier_policy (key, name) VALUES (:k, 'Race') RETURNING id"), {"k": key}
        )
        version_id = await conn.scalar(
            text(
                "INSERT INTO tier_policy_version (policy_id, version, status, tiers, created_by) VALUES (:p, 1, "
                """'active', '[{"code": "gold", "label": "Gold", "rank": 20, "condition": {"always": true}}]', """
                "'test') RETURNING id"
            ),
            {"p": policy_id},
        )
        ids = []
        for n in range(CUSTOMERS):
            ids.append(
                await conn.scalar(
                    text(
                        inserting_customers(
                            "INSERT INTO customer (external_id, segment, onboarded_at) VALUES (:e, 'retail', now())"
                        )
                    ),
                    {"e": f"RACE-{tag}-{n}"},
                )
            )
        await conn.execute(
            text(
                "INSERT INTO tier_assignment (customer_id, policy_id, version_id, tier_code, tier_rank, since, "
                "qualified_code, qualified_rank, evaluated_at, facts) "
                "SELECT id, :p, :v, 'gold', 20, now(), 'gold', 20, now(), '[]' FROM unnest(CAST(:ids AS bigint[])) id"
            ),
            {"p": policy_id, "v": version_id, "ids": ids},
        )
        for manager in ("A", "B"):
            await conn.execute(
                text(
                    "INSERT INTO relationship_manager (manager_id, name, team, policy_key, tiers, capacity) "
                    "VALUES (:m, 'Racer', 'race', :k, ARRAY['gold'], :c)"
                ),
                {"m": f"RACE-{tag}-{manager}", "k": key, "c": CAPACITY},
            )
    yield {"tag": tag, "customers": ids}
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM manager_assignment_change WHERE customer_id = ANY(:ids)"), {"ids": ids})
        await conn.execute(text("DELETE FROM manager_assignment_run WHERE actor LIKE :a"), {"a": f"race-{tag}-%"})
        await conn.execute(text("DELETE FROM tier_assignment WHERE customer_id = ANY(:ids)"), {"ids": ids})
        await delete_customers(conn, "id = ANY(:ids)", {"ids": ids})
        await conn.execute(text("DELETE FROM relationship_manager WHERE manager_id LIKE :m"), {"m": f"RACE-{tag}-%"})
        await conn.execute(text("DELETE FROM tier_policy WHERE key = :k"), {"k": key})


async def test_concurrent_runs_are_serialized_and_never_assign_twice(engine, population):
    sessionmaker = create_sessionmaker(engine)
    tag, ids = population["tag"], population["customers"]

    async def one_run(actor: str):
        async with sessionmaker() as session:
            run = await managers_service.run_assignment(session, actor)
            await session.commit()
            return run

    async with engine.connect() as holder:
        await holder.execute(text("SELECT pg_advisory_xact_lock(hashtext('tierwise.manager_assignment'))"))
        runs = [asyncio.create_task(one_run(f"race-{tag}-{n}")) for n in (1, 2)]
        async with engine.connect() as watcher:
            for _ in range(200):  # both runs are waiting for the run lock: they started together
                waiting = await watcher.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND wait_event = 'advisory' AND pid <> pg_backend_pid()"
                    )
                )
                await watcher.rollback()
                if waiting == 2:
                    break
                await asyncio.sleep(0.05)
            assert waiting == 2
        await holder.rollback()  # let them go at once
        first, second = await asyncio.gather(*runs)

    assert sorted((first.assigned, second.assigned)) == [0, CUSTOMERS]  # one did the work, the other found it done
    later = first if first.assigned == 0 else second
    assert later.kept >= CUSTOMERS
    async with engine.connect() as conn:
        per_customer = (
            await conn.execute(
                text(
                    "SELECT customer_id, count(*) FROM manager_assignment_change "
                    "WHERE customer_id = ANY(:ids) AND action = 'assigned' GROUP BY customer_id"
                ),
                {"ids": ids},
            )
        ).all()
        loads = (
            await conn.execute(
                text(
                    "SELECT m.manager_id, count(a.customer_id) FROM relationship_manager m "
                    "LEFT JOIN manager_assignment a ON a.manager_id = m.id WHERE m.manager_id LIKE :m GROUP BY 1"
                ),
                {"m": f"RACE-{tag}-%"},
            )
        ).all()
    assert sorted(n for _, n in per_customer) == [1] * CUSTOMERS  # everyone assigned, once
    assert sorted(n for _, n in loads) == [2, 3] and all(n <= CAPACITY for _, n in loads)
