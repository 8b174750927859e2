"""The hot read of GET /v1/customers/{id}/tiers (app/core/hotpath.py) answers exactly as the FastAPI route does:
the same document, held to the CustomerTiers schema, and the same problem+json for every error."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from app.main import create_app
from app.tiering.schemas import CustomerTiers
from tests.tiering.test_assignment import make_customer, set_balance, wealth  # noqa: F401 (fixture)


def _served_by_hot_path(app) -> bool:
    from app.core.hotpath import HotReads

    return any(m.cls is HotReads for m in app.user_middleware)


async def test_hot_and_routed_reads_give_the_same_document_in_the_schema(app, client, routed, as_role, wealth):  # noqa: F811
    assert _served_by_hot_path(app)
    await make_customer(client, as_role, "H1", "620000.00")
    await make_customer(client, as_role, "H2", "1000.00")
    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    assert (await client.put("/v1/customers/H2/tiers/wealth/override", headers=as_role("admin"),
                             json={"tier": "private", "reason": "Onboarding", "expires_at": expires})).status_code == 200
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


@pytest.mark.parametrize("path, role, status", [
    ("/v1/customers/H9/tiers", None, 401),  # no key
    ("/v1/customers/H9/tiers", "integration", 403),  # lacks tiers:read
    ("/v1/customers/NOBODY/tiers", "app", 404),
    ("/v1/customers/-bad-/tiers", "app", 422),  # not an external id: FastAPI's own validation answers
    ("/v1/customers/H9/tiers?x=1", "app", 200),  # a query the hot path does not take: FastAPI answers
])
async def test_errors_are_the_same_problem_json_on_both_paths(client, routed, as_role, wealth, path, role, status):  # noqa: F811
    await make_customer(client, as_role, "H9", "1000.00")
    headers = as_role(role) if role else {}
    hot, plain = await client.get(path, headers=headers), await routed.get(path, headers=headers)
    assert hot.status_code == plain.status_code == status, hot.text
    assert hot.json() == plain.json()
    if status != 200:
        assert hot.headers["content-type"] == "application/problem+json"


async def test_unknown_key_is_401_and_request_id_and_metrics_still_apply(client, as_role, wealth):  # noqa: F811
    await make_customer(client, as_role, "H3", "1000.00")
    unknown = await client.get("/v1/customers/H3/tiers", headers={"X-API-Key": "tw_000000000000_nope"})
    assert unknown.status_code == 401 and unknown.headers["www-authenticate"] == "ApiKey"
    ok = await client.get("/v1/customers/H3/tiers", headers={**as_role("app"), "X-Request-ID": "hot-1"})
    assert ok.status_code == 200 and ok.headers["x-request-id"] == "hot-1"
    metrics = (await client.get("/metrics")).text
    assert 'route="/v1/customers/{external_id}/tiers",status="200"' in metrics


async def test_rate_limit_applies_on_the_hot_path(test_settings, sessionmaker, keys, wealth, client, as_role):  # noqa: F811
    await make_customer(client, as_role, "H4", "1000.00")
    limited = create_app(test_settings.model_copy(update={"rate_limit_app_per_s": 1.0, "rate_limit_app_burst": 2}),
                         sessionmaker=sessionmaker)
    transport = httpx.ASGITransport(app=limited, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://tierwise.test") as limited_client:
        statuses = [(await limited_client.get("/v1/customers/H4/tiers", headers=as_role("app"))).status_code
                    for _ in range(3)]
    assert statuses == [200, 200, 429]

