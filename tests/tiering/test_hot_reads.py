"""The hot read of GET /v1/customers/{id}/tiers (app/core/hotpath.py) answers exactly as the FastAPI route does:
the same document, held to the CustomerTiers schema, and the same problem+json for every error."""

from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from app.main import create_app
from app.tiering.assignment.schemas import CustomerTiers
from tests.tiering.test_assignment import make_customer, set_balance


def _served_by_hot_path(app) -> bool:
    from app.core.hotpath import HotReads

    return any(m.cls is HotReads for m in app.user_middleware)


async def test_hot_and_routed_reads_give_the_same_document_in_the_schema(app, client, routed, as_role, wealth):
    assert _served_by_hot_path(app)
    await make_customer(client, as_role, "H1", "620000.00")
    await make_customer(client, as_role, "H2", "1000.00")
    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    assert (
        await client.put(
            "/v1/customers/H2/tiers/wealth/override",
            headers=as_role("admin"),
            json={"tier": "private", "reason": "Onboarding", "expires_at": expires},
        )
    ).status_code == 200
    await set_balance(client, as_role, "H1", "100.00")  # qualifies lower: at risk, in grace
    for external_id in ("H1", "H2"):
        hot = await client.get(f"/v1/customers/{external_id}/tiers", headers=as_role("app"))
        plain = await routed.get(f"/v1/customers/{external_id}/tiers", headers=as_role("app"))
        assert hot.status_code == plain.status_code == 200
        assert hot.headers["content-type"] == plain.headers["content-type"] == "application/json"
        assert hot.json() == plain.json()
        # Every field the schema has, in its JSON form, and nothing more.
        assert CustomerTiers.model_validate(hot.json()).model_dump(mode="json") == hot.json()
    at_risk = (await client.get("/v1/customers/H1/tiers", headers=as_role("app"))).json()["tiers"][0]
    assert at_risk["at_risk"] is True and at_risk["downgrade_to"] == "mass" and at_risk["tier"] == "wealth"
    assert at_risk["explanation"][0]["conditions"][0]["attribute"] == "aum_avg_3m"
    overridden = (await client.get("/v1/customers/H2/tiers", headers=as_role("app"))).json()["tiers"][0]
    assert overridden["tier"] == "private" and overridden["override"]["reason"] == "Onboarding"
    assert overridden["override"]["expires_at"].endswith("Z")


@pytest.mark.parametrize(
    "path, role, status",
    [
        ("/v1/customers/H9/tiers", None, 401),  # no key
        ("/v1/customers/H9/tiers", "integration", 403),  # lacks tiers:read
        ("/v1/customers/NOBODY/tiers", "app", 404),
        ("/v1/customers/-bad-/tiers", "app", 422),  # not an external id: FastAPI's own validation answers
        ("/v1/customers/H9/tiers?x=1", "app", 200),  # a query the hot path does not take: FastAPI answers
    ],
)
async def test_errors_are_the_same_problem_json_on_both_paths(client, routed, as_role, wealth, path, role, status):
    await make_customer(client, as_role, "H9", "1000.00")
    headers = as_role(role) if role else {}
    hot, plain = await client.get(path, headers=headers), await routed.get(path, headers=headers)
    assert hot.status_code == plain.status_code == status, hot.text
    assert hot.json() == plain.json()
    if status != 200:
        assert hot.headers["content-type"] == "application/problem+json"


async def test_unknown_key_is_401_and_request_id_and_metrics_still_apply(client, as_role, wealth):
    await make_customer(client, as_role, "H3", "1000.00")
    unknown = await client.get("/v1/customers/H3/tiers", headers={"X-API-Key": "tw_000000000000_nope"})
    assert unknown.status_code == 401 and unknown.headers["www-authenticate"] == "ApiKey"
    ok = await client.get("/v1/customers/H3/tiers", headers={**as_role("app"), "X-Request-ID": "hot-1"})
    assert ok.status_code == 200 and ok.headers["x-request-id"] == "hot-1"
    metrics = (await client.get("/metrics")).text
    assert 'route="/v1/customers/{customer_id}/tiers",status="200"' in metrics


async def test_rate_limit_applies_on_the_hot_path(test_settings, sessionmaker, keys, wealth, client, as_role):
    await make_customer(client, as_role, "H4", "1000.00")
    limited = create_app(
        test_settings.model_copy(update={"rate_limit_app_per_s": 1.0, "rate_limit_app_burst": 2}),
        sessionmaker=sessionmaker,
    )
    transport = httpx.ASGITransport(app=limited, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://tierwise.test") as limited_client:
        statuses = [
            (await limited_client.get("/v1/customers/H4/tiers", headers=as_role("app"))).status_code for _ in range(3)
        ]
    assert statuses == [200, 200, 429]


async def test_both_paths_write_the_schemas_own_bytes(client, routed, as_role, wealth, session):
    """The hot path and the route serialize the same schema (app.core.serializers): the same bytes, and the bytes
    CustomerTiers itself writes, for a customer with no tier yet, a plain one, one with an override (and an
    expired one) and one at risk of a downgrade."""
    needs = [
        {
            "code": "saver",
            "label": "Saver",
            "rank": 10,  # a set-valued fact: its JSON is the schema's too
            "condition": {"attr": "held_products", "op": "contains", "value": "term_deposit_12m"},
        },
        {"code": "other", "label": "Other", "rank": 0, "condition": {"always": True}},
    ]
    assert (
        await client.post(
            "/v1/tier-policies", headers=as_role("admin"), json={"policy_key": "needs", "name": "Needs", "tiers": needs}
        )
    ).status_code == 201
    assert (
        await client.post("/v1/tier-policies/needs/versions/1/activate", headers=as_role("admin"))
    ).status_code == 200
    await make_customer(client, as_role, "S0", "1000.00")
    await session.execute(
        text("DELETE FROM tier_assignment WHERE customer_id = (SELECT id FROM customer WHERE external_id = 'S0')")
    )  # no policy has evaluated it
    await session.commit()
    await make_customer(client, as_role, "S1", "60000.00")
    assert (
        await client.put(
            "/v1/customers/S1/holdings",
            headers=as_role("integration"),
            json={
                "holdings": [
                    {"product_code": code, "balance": "30000.00", "as_of": date.today().isoformat()}
                    for code in ("current_account", "savings_account")
                ]
            },
        )
    ).status_code == 200
    for external_id, expires in (("S2", timedelta(days=30)), ("S3", None)):
        await make_customer(client, as_role, external_id, "1000.00")
        body = {
            "tier": "private",
            "reason": "Onboarding",
            "expires_at": (datetime.now(UTC) + expires).isoformat() if expires else None,
        }
        assert (
            await client.put(f"/v1/customers/{external_id}/tiers/wealth/override", headers=as_role("admin"), json=body)
        ).status_code == 200
    await session.execute(
        text(
            "UPDATE tier_assignment SET override_expires_at = now() - interval '1 second' "
            "WHERE customer_id = (SELECT id FROM customer WHERE external_id = 'S3')"
        )
    )
    await session.commit()
    await make_customer(client, as_role, "S4", "620000.00")
    await set_balance(client, as_role, "S4", "100.00")  # qualifies lower: at risk, in grace
    for external_id in ("S0", "S1", "S2", "S3", "S4"):
        hot = await client.get(f"/v1/customers/{external_id}/tiers", headers=as_role("app"))
        plain = await routed.get(f"/v1/customers/{external_id}/tiers", headers=as_role("app"))
        assert hot.status_code == plain.status_code == 200
        assert hot.content == plain.content == CustomerTiers.model_validate_json(hot.content).model_dump_json().encode()
    assert (await client.get("/v1/customers/S0/tiers", headers=as_role("app"))).json()["tiers"] == []
    needs_of_s1 = (await client.get("/v1/customers/S1/tiers", headers=as_role("app"))).json()["tiers"][0]
    assert needs_of_s1["explanation"][0]["conditions"][0]["value"] == ["current_account", "savings_account"]
    overridden = (await client.get("/v1/customers/S2/tiers", headers=as_role("app"))).json()["tiers"][1]
    assert overridden["tier"] == "private" and overridden["override"]["tier"] == "private"
    assert (await client.get("/v1/customers/S3/tiers", headers=as_role("app"))).json()["tiers"][1]["override"] is None
