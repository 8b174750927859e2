"""The transactional outbox: complaint moves emit complaint.status_changed in their own transaction, a rolled-back
change emits nothing, the catalogue is enforced, and the set-based forms emit many events in one statement."""

import pytest
from pydantic import ValidationError
from sqlalchemy import BigInteger, Text, column, func, literal, select, text, values

from app.webhooks import outbox
from tests.feedback.helpers import make_customer
from tests.feedback.test_complaints import complaint, move


async def _events(session, event_type: str = "complaint.status_changed") -> list[dict]:
    rows = await session.execute(
        text("SELECT payload, customer_id FROM webhook_event WHERE event_type = :t ORDER BY id"), {"t": event_type}
    )
    return [{**payload, "_customer": customer} for payload, customer in rows]


async def test_opening_and_moving_a_complaint_emits_status_changes_without_free_text(client, as_role, session):
    await make_customer(client, as_role, "W1")
    opened = await client.post(
        "/v1/feedback/complaints",
        headers=as_role("app"),
        json=complaint("w-1", "W1", "fees", description="My PIN is 4321"),
    )
    cid = opened.json()["id"]
    await client.post("/v1/feedback/complaints", headers=as_role("app"), json=complaint("w-1", "W1", "fees"))  # retry
    assert (await move(client, as_role, cid, "in_progress", "called the customer back")).status_code == 200
    assert (await move(client, as_role, cid, "closed")).status_code == 409  # refused: no event
    events = await _events(session)
    customer_id = await session.scalar(text("SELECT id FROM customer WHERE external_id = 'W1'"))
    assert [(e["from_status"], e["to_status"]) for e in events] == [(None, "open"), ("open", "in_progress")]
    assert all(
        e["complaint_id"] == cid
        and e["customer_id"] == "W1"
        and e["category"] == "fees"
        and e["_customer"] == customer_id
        for e in events
    )
    assert "4321" not in str(events) and "called" not in str(events)


async def test_a_rolled_back_change_emits_nothing(engine):
    async with engine.connect() as connection:
        before = await connection.scalar(text("SELECT count(*) FROM webhook_event"))
    async with engine.connect() as connection:
        from sqlalchemy.ext.asyncio import AsyncSession

        async with AsyncSession(connection) as session:
            await outbox.emit(
                session,
                "benefit.used",
                {"customer_id": "C1", "benefit_code": "lounge", "used_at": "2026-12-01T10:00:00Z"},
            )
            assert await session.scalar(text("SELECT count(*) FROM webhook_event")) == before + 1
            await session.rollback()
    async with engine.connect() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM webhook_event")) == before


async def test_emit_refuses_an_unknown_type_and_a_payload_outside_its_schema(session):
    with pytest.raises(ValueError, match="unknown webhook event type"):
        await outbox.emit(session, "tier.exploded", {})
    with pytest.raises(ValidationError):
        await outbox.emit(session, "tier.at_risk", {"customer_id": "C1", "policy_key": "wealth", "name": "Jane"})


async def test_the_set_based_form_emits_one_event_per_changed_row_in_the_changing_statement(session):
    """A CTE statement changing many customers at once appends its events (no Python per row)."""
    changes = select(
        values(
            column("customer_id", BigInteger), column("external_id", Text), column("direction", Text), name="changes"
        ).data([(i, f"C{i}", "upgrade" if i % 3 else "downgrade") for i in range(1, 3001)])
    ).cte("changes")
    events = (
        outbox.emit_from(
            select(
                func.concat("tier.", changes.c.direction, "d"),
                changes.c.customer_id,
                outbox.json_object(
                    customer_id=changes.c.external_id,
                    policy=literal("wealth"),
                    from_tier="gold",
                    to_tier=changes.c.direction,
                    reason="rules",
                    at=func.now(),
                ),
            )
        )
        .returning(text("1"))
        .cte("events")
    )
    emitted = await session.scalar(select(func.count()).select_from(events))
    assert emitted == 3000
    rows = (await session.execute(text("SELECT event_type, count(*) FROM webhook_event GROUP BY 1 ORDER BY 1"))).all()
    assert rows == [("tier.downgraded", 1000), ("tier.upgraded", 2000)]
    payload = await session.scalar(text("SELECT payload FROM webhook_event WHERE customer_id = 3"))
    assert payload["customer_id"] == "C3" and payload["to_tier"] == "downgrade" and payload["from_tier"] == "gold"


async def test_the_text_form_appends_events_to_a_statement_written_as_text(session):
    emitted = await session.scalar(
        text(f"""
        WITH moved AS (SELECT g AS customer_id FROM generate_series(1, 50) g),
             events AS ({outbox.INSERT_SQL}
                        SELECT 'benefit.used', customer_id,
                               jsonb_build_object('customer_id', 'C' || customer_id, 'benefit_code', 'lounge',
                                                  'used_at', now())
                        FROM moved RETURNING 1)
        SELECT count(*) FROM events""")
    )
    assert emitted == 50
    assert await session.scalar(text("SELECT count(DISTINCT event_id) FROM webhook_event")) == 50
