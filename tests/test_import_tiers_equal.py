"""The NDJSON import, re-tiered by the worker's batch (many customers under several policies: the features staged
once for every policy, app/tiering/assignment/staged.py), gives every customer the same assignments, facts and
transitions as the per-customer PUT path (one customer, the features SELECT per policy)."""

import json

from sqlalchemy import text

from app.customers import retier
from tests.factories import customer_body, state_of
from tests.test_retier import ACTIVITY_POLICY

COUNT = 130  # above staged.MIN_CUSTOMERS: the import's batch stages the features

POLICIES = {
    "eq-activity": ACTIVITY_POLICY,
    "eq-profile": {
        "name": "Profile",
        "downgrade_grace_days": 30,
        "tiers": [
            {
                "code": "senior_business",
                "label": "Senior business",
                "rank": 3,
                "condition": {
                    "all": [
                        {"attr": "segment", "op": "eq", "value": "small_business"},
                        {"attr": "tenure_months", "op": "gte", "value": 60},
                    ]
                },
            },
            {
                "code": "business",
                "label": "Business",
                "rank": 2,
                "condition": {"attr": "segment", "op": "eq", "value": "small_business"},
            },
            {"code": "other", "label": "Other", "rank": 1, "condition": {"always": True}},
        ],
    },
}


def _body(i: int, round_: int) -> dict:
    segment = "small_business" if (i + round_) % 3 == 0 else "retail"
    return customer_body(
        segment=segment, onboarded_at=f"{2008 + i % 18}-0{1 + i % 9}-15T08:00:00Z", risk_level=1 + i % 5
    )


async def test_an_import_gives_the_same_tiers_and_transitions_as_put(client, as_role, session, sessionmaker):
    admin, integration = as_role("admin"), as_role("integration")
    for key, policy in POLICIES.items():
        assert (
            await client.post("/v1/tier-policies", headers=admin, json={"policy_key": key, **policy})
        ).status_code == 201
        activated = await client.post(f"/v1/tier-policies/{key}/versions/1/activate", headers=admin)
        assert activated.status_code == 200, activated.text
    for round_ in (0, 1):  # created, then updated (a third of the customers change segment: transitions)
        lines = "\n".join(json.dumps({"customer_id": f"EQI{i}", **_body(i, round_)}) for i in range(COUNT))
        response = await client.post(
            "/v1/customers/import",
            content=lines,
            headers={**integration, "Content-Type": "application/x-ndjson"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == COUNT
        assert await retier.drain(sessionmaker, 1000) >= COUNT  # one batch: the import's customers at once
        for i in range(COUNT):
            put = await client.put(f"/v1/customers/EQP{i}", json=_body(i, round_), headers=integration)
            assert put.status_code in (200, 201), put.text

    imported = await state_of(session, "EQI", ("tiers", "transitions"))
    assert imported == await state_of(session, "EQP", ("tiers", "transitions"))
    assert len(imported) == COUNT and all(len(state["tiers"]) == 2 for state in imported.values())
    moves = await session.execute(
        text(
            "SELECT DISTINCT a.tier_code, t.direction FROM customer c JOIN tier_assignment a ON a.customer_id = c.id "
            "JOIN tier_transition t ON t.customer_id = c.id WHERE c.external_id LIKE 'EQI%'"
        )
    )
    tiers, directions = zip(*moves.all(), strict=True)
    assert {"initial", "upgrade"} <= set(directions)  # the update moved tiers: the comparison covers moves
    assert set(tiers) >= {"idle", "other", "business", "senior_business"}
