"""The benefit catalogue: admin writes audited with the calling key, every change a kept revision, attachments and
extra conditions checked at write time with a pointer, ETags, and the shipped defaults."""

from sqlalchemy import select

from app.audit.models import AuditEvent
from app.benefits.service import default_benefits, load_default_benefits
from app.tiering.policies import load_default_policies
from tests.benefits.helpers import add_benefit, benefit_body


async def test_a_benefit_is_created_changed_and_deactivated_with_every_revision_kept_and_audited(
    client, as_role, wealth, session
):
    admin = as_role("admin")
    created = await client.post(
        "/v1/benefits",
        headers={**admin, "Idempotency-Key": "b-1"},
        json=benefit_body(
            "lounge", "wealth", kind="service", value="4", unit="count", usage_limit=4, usage_period="year"
        ),
    )
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/v1/benefits/lounge"
    body = created.json()
    assert body["revision"] == 1 and body["value"] == "4.0000" and body["usage_limit"] == 4
    assert body["attachments"] == [{"policy_key": "wealth", "tier": "wealth", "condition": None}]
    replay = await client.post(
        "/v1/benefits",
        headers={**admin, "Idempotency-Key": "b-1"},
        json=benefit_body(
            "lounge", "wealth", kind="service", value="4", unit="count", usage_limit=4, usage_period="year"
        ),
    )
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"

    etag = (await client.get("/v1/benefits/lounge", headers=as_role("app"))).headers["etag"]
    changed = await client.patch(
        "/v1/benefits/lounge", headers={**admin, "If-Match": etag}, json={"usage_limit": 6, "value": "6"}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["revision"] == 2 and changed.json()["usage_limit"] == 6
    stale = await client.patch("/v1/benefits/lounge", headers={**admin, "If-Match": etag}, json={"usage_limit": 8})
    assert stale.status_code == 412
    gone = await client.delete("/v1/benefits/lounge", headers=admin)
    assert gone.status_code == 200 and gone.json()["is_active"] is False and gone.json()["revision"] == 3

    revisions = (await client.get("/v1/benefits/lounge/revisions", headers=admin)).json()["items"]
    assert [(r["revision"], r["document"]["usage_limit"], r["document"]["is_active"]) for r in revisions] == [
        (1, 4, True),
        (2, 6, True),
        (3, 6, False),
    ]
    assert all(r["actor"] == "test-admin" for r in revisions)
    audit = (
        await session.execute(
            select(AuditEvent.action, AuditEvent.actor)
            .where(AuditEvent.entity_type == "benefit")
            .order_by(AuditEvent.id)
        )
    ).all()
    assert audit == [
        ("benefit.create", "test-admin"),
        ("benefit.update", "test-admin"),
        ("benefit.deactivate", "test-admin"),
    ]
    listed = await client.get("/v1/benefits", params={"active": "false", "policy_key": "wealth"}, headers=admin)
    assert [b["code"] for b in listed.json()["items"]] == ["lounge"]
    assert (await client.get("/v1/benefits", params={"kind": "gift"}, headers=admin)).json()["items"] == []


async def test_bad_benefits_are_refused_with_a_pointer_to_the_field(client, as_role, wealth):
    admin = as_role("admin")

    async def refused(body: dict, pointer: str, status: int = 422) -> None:
        response = await client.post("/v1/benefits", headers=admin, json=body)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        if pointer:
            assert pointer in [e.get("pointer") for e in response.json()["errors"]], response.text

    await refused(benefit_body("b1", {"policy_key": "nope", "tier": "gold"}), "/attachments/0/policy_key")
    await refused(benefit_body("b1", "gold", "platinum"), "/attachments/1/tier")
    await refused(
        benefit_body(
            "b1", {"policy_key": "wealth", "tier": "gold", "condition": {"attr": "shoe_size", "op": "eq", "value": 1}}
        ),
        "/attachments/0/condition/attr",
    )
    await refused(benefit_body("b1", "gold", usage_limit=3), "/usage_period")
    await refused(benefit_body("b1", "gold", kind="cashback"), "/kind")
    await refused(
        benefit_body("b1", "gold", valid_from="2026-02-01T00:00:00Z", valid_to="2026-01-01T00:00:00Z"), "/valid_to"
    )
    await refused(benefit_body("b1", "gold", texts={}), "/texts")
    await add_benefit(client, as_role, "b1", "gold")
    await refused(benefit_body("b1", "gold"), "", status=409)
    assert (await client.get("/v1/benefits/none-such", headers=admin)).status_code == 404


async def test_the_shipped_benefits_attach_to_the_default_policies(session):
    await load_default_policies(session)
    created = await load_default_benefits(session)
    assert len(created) == len(default_benefits()) >= 10
    kinds = {b.kind for b in default_benefits()}
    assert kinds == {
        "fee_waiver",
        "rate_discount",
        "points_multiplier",
        "service",
        "gift",
        "partner_offer",
        "exclusive_product",
    }
    assert all({"en", "zh-CN"} <= set(b.texts) for b in default_benefits())
    assert await load_default_benefits(session) == []  # again: nothing new
