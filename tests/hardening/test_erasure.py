"""Erasure leaves no personal data anywhere: after DELETE /v1/customers/{id}, none of the customer's distinctive
values appears in any column of any table (every column of every table, enumerated from information_schema)."""

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import text

from app.tiering.policies import default_policies
from tests.factories import add_products, customer_body

EXTERNAL_ID = "ERASE-ME-7c1f"
NAME = "Zebulon Quixotic-Erasure"
BIRTH_DATE = "1937-08-13"
ATTRIBUTE_VALUE = "zq-attr-9f3e"
EVENT_ID = "zq-evt-5e2d"
BALANCE = "987654.32"
EMAIL = "zebulon.quixotic@example.org"
PHONE = "+44 7700 900417"
WORDS = f"I am {NAME}, write to {EMAIL} or call {PHONE}"  # the customer's own words
FEEDBACK_EVENT_ID = f"fb-{EXTERNAL_ID}-imp"  # client event ids that embed the external id
SURVEY_EVENT_ID = f"srv-{EXTERNAL_ID}-1"
COMPLAINT_EVENT_ID = f"cmp-{EXTERNAL_ID}-1"
NEEDLES = [
    EXTERNAL_ID,
    NAME,
    "Quixotic",
    BIRTH_DATE,
    ATTRIBUTE_VALUE,
    EVENT_ID,
    BALANCE,
    EMAIL,
    PHONE,
    FEEDBACK_EVENT_ID,
    SURVEY_EVENT_ID,
    COMPLAINT_EVENT_ID,
]
REDACTED = "[redacted: the customer was erased]"


async def _columns(session) -> dict[str, list[str]]:
    rows = await session.execute(
        text(
            "SELECT c.table_name, c.column_name FROM information_schema.columns c "
            "JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
            "WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' ORDER BY c.table_name, c.ordinal_position"
        )
    )
    tables: dict[str, list[str]] = {}
    for table, column in rows:
        tables.setdefault(table, []).append(column)
    return tables


async def _where_found(session, needle: str) -> list[str]:
    found = []
    for table, columns in (await _columns(session)).items():
        for column in columns:
            hits = await session.scalar(
                text(f'SELECT count(*) FROM "{table}" WHERE "{column}"::text LIKE :pattern'), {"pattern": f"%{needle}%"}
            )
            if hits:
                found.append(f"{table}.{column}")
    return found


async def test_erased_customer_leaves_no_personal_value_in_any_table(client, as_role, session):
    admin, integration = as_role("admin"), as_role("integration")
    await add_products(session)
    await session.commit()
    for body in default_policies():
        assert (
            await client.post("/v1/tier-policies", json=body.model_dump(mode="json", exclude_none=True), headers=admin)
        ).status_code == 201
        assert (
            await client.post(f"/v1/tier-policies/{body.policy_key}/versions/1/activate", headers=admin)
        ).status_code == 200
    assert (
        await client.put("/v1/attributes/custom/favourite_branch", json={"type": "string"}, headers=admin)
    ).status_code == 200
    profile = customer_body(display_name=NAME, birth_date=BIRTH_DATE, attributes={"favourite_branch": ATTRIBUTE_VALUE})
    assert (await client.put(f"/v1/customers/{EXTERNAL_ID}", json=profile, headers=integration)).status_code == 201
    today = date.today().isoformat()
    holdings = {
        "holdings": [
            {"product_code": "savings_account", "balance": BALANCE, "as_of": today},
            {"product_code": "current_account", "balance": "1200.00", "as_of": today},
        ]
    }
    assert (
        await client.put(f"/v1/customers/{EXTERNAL_ID}/holdings", json=holdings, headers=integration)
    ).status_code == 200
    when = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    events = {
        "events": [
            {
                "type": "transaction",
                "event_id": EVENT_ID,
                "customer_id": EXTERNAL_ID,
                "occurred_at": when,
                "amount": "54.90",
                "direction": "debit",
                "channel": "card",
            },
            {"type": "login", "event_id": EVENT_ID + "-l", "customer_id": EXTERNAL_ID, "occurred_at": when},
        ]
    }
    assert (await client.post("/v1/events", json=events, headers=integration)).json()["recorded"] == 2
    override = await client.put(
        f"/v1/customers/{EXTERNAL_ID}/tiers/wealth/override",
        headers=admin,
        json={"tier": "private", "reason": f"Relationship with {NAME}"},
    )
    assert override.status_code == 200, override.text
    tiers = (await client.get(f"/v1/customers/{EXTERNAL_ID}/tiers", headers=admin)).json()["tiers"]
    assert len(tiers) == len(default_policies())
    served = await client.get(f"/v1/customers/{EXTERNAL_ID}/recommendations?explore=false", headers=admin)
    assert served.status_code == 200 and served.json()["items"], served.text
    item = served.json()["items"][0]
    feedback = {
        "events": [
            {
                "event_id": FEEDBACK_EVENT_ID,
                "recommendation_id": item["recommendation_id"],
                "customer_id": EXTERNAL_ID,
                "type": "impression",
                "occurred_at": datetime.now(UTC).isoformat(),
            }
        ]
    }
    recorded = await client.post("/v1/feedback/events", json=feedback, headers=as_role("app"))
    assert recorded.status_code == 200 and not recorded.json().get("rejected"), recorded.text
    survey = {
        "event_id": SURVEY_EVENT_ID,
        "customer_id": EXTERNAL_ID,
        "kind": "nps",
        "score": 3,
        "comment": WORDS,
        "channel": "mobile",
        "touchpoint": "app_rating_prompt",
        "occurred_at": when,
    }
    assert (await client.post("/v1/feedback/surveys", json=survey, headers=as_role("app"))).status_code == 201
    complaint = {
        "event_id": COMPLAINT_EVENT_ID,
        "customer_id": EXTERNAL_ID,
        "category": "fees",
        "channel": "phone",
        "description": WORDS,
        "opened_at": when,
    }
    opened = await client.post("/v1/feedback/complaints", json=complaint, headers=as_role("app"))
    assert opened.status_code == 201, opened.text
    complaint_id = opened.json()["id"]
    moved = await client.post(
        f"/v1/feedback/complaints/{complaint_id}/transitions",
        json={"to_status": "resolved", "note": f"Refunded; {NAME} confirmed at {PHONE}"},
        headers=admin,
    )
    assert moved.status_code == 200, moved.text
    customer_id = await session.scalar(text("SELECT id FROM customer WHERE external_id = :e"), {"e": EXTERNAL_ID})
    served_reasons = text(
        "SELECT array_agg(i.reasons::text) FROM recommendation_item i JOIN recommendation_list l "
        "ON l.id = i.list_id WHERE l.customer_id = :customer_id"
    )
    reasons = await session.scalar(served_reasons, {"customer_id": customer_id})
    assert reasons and all("SUITABLE" in r for r in reasons)  # "risk R1 <= tolerance 3": the customer's values

    # The probe works: before erasure every value is found somewhere.
    for needle in NEEDLES:
        assert await _where_found(session, needle), f"{needle} was never stored: the probe proves nothing"

    assert (await client.delete(f"/v1/customers/{EXTERNAL_ID}", headers=admin)).status_code == 204

    leftovers = {needle: where for needle in NEEDLES if (where := await _where_found(session, needle))}
    assert leftovers == {}, f"personal data left after erasure: {leftovers}"
    assert await session.scalar(served_reasons, {"customer_id": customer_id}) == ["[]"] * len(reasons)
    assert (await client.get(f"/v1/customers/{EXTERNAL_ID}", headers=admin)).status_code == 404

    # What is kept for legal retention: the complaint, anonymised (category, channel, status history, dates).
    kept = await client.get(f"/v1/feedback/complaints/{complaint_id}", headers=admin)
    assert kept.status_code == 200, kept.text
    kept = kept.json()
    assert kept["description"] == REDACTED and kept["category"] == "fees" and kept["status"] == "resolved"
    assert kept["customer_id"].startswith("erased:") and kept["event_id"] != COMPLAINT_EVENT_ID
    assert [(h["from_status"], h["to_status"], h["note"]) for h in kept["history"]] == [
        (None, "open", None),
        ("open", "resolved", None),
    ]
    assert kept["opened_at"] == opened.json()["opened_at"] and kept["resolved_at"] is not None
    surveys = await session.execute(
        text("SELECT score, comment FROM survey_response WHERE customer_id = :id"), {"id": customer_id}
    )
    assert [tuple(row) for row in surveys] == [(3, None)]  # the score counts on, anonymously; the comment is gone


async def test_a_customer_created_again_under_an_erased_id_can_be_erased_again_and_again(client, as_role, session):
    """Erase, create again under the same external id, erase again, any number of times: each erasure answers 204
    and leaves nothing of that incarnation; repeating an erasure still answers 204; the erased rows do not say
    which of them were the same external id."""
    admin, integration = as_role("admin"), as_role("integration")
    await add_products(session)
    await session.commit()
    today = date.today().isoformat()
    external_id = "AGAIN-4d1e"
    for cycle in range(3):
        name = f"Again Person{cycle}"
        profile = customer_body(display_name=name)
        put = await client.put(f"/v1/customers/{external_id}", json=profile, headers=integration)
        assert put.status_code == 201, put.text
        holdings = {"holdings": [{"product_code": "savings_account", "balance": "10.00", "as_of": today}]}
        assert (
            await client.put(f"/v1/customers/{external_id}/holdings", json=holdings, headers=integration)
        ).status_code == 200
        erased = await client.delete(f"/v1/customers/{external_id}", headers=admin)
        assert erased.status_code == 204, erased.text
        assert (await client.delete(f"/v1/customers/{external_id}", headers=admin)).status_code == 204
        assert (await client.get(f"/v1/customers/{external_id}", headers=admin)).status_code == 404
        assert await _where_found(session, name) == []
    rows = (await session.execute(text("SELECT external_id, erased_at FROM customer ORDER BY id"))).all()
    assert len(rows) == 3 and all(row.erased_at is not None for row in rows)
    assert len({row.external_id for row in rows}) == 3  # no shared token links the three incarnations
    assert await _where_found(session, external_id) == []
    assert await session.scalar(text("SELECT count(*) FROM holding")) == 0
    assert (await client.delete("/v1/customers/AGAIN-never", headers=admin)).status_code == 404
