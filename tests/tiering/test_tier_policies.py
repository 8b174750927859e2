"""Tier policies over HTTP: versions and their lifecycle, validation pointers, ETags, audit, what-if, simulation."""

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from app.tiering import policies
from app.tiering.models import TierPolicy, TierPolicyVersion
from tests.factories import WEALTH_TIERS, add_products, customer_body

PROBLEM_JSON = "application/problem+json"


def policy_body(key: str = "wealth", tiers: list | None = None, **overrides) -> dict:
    body = {
        "policy_key": key,
        "name": f"{key} tiers",
        "description": "test",
        "tiers": WEALTH_TIERS if tiers is None else tiers,
        "downgrade_grace_days": 90,
    }
    body.update(overrides)
    return body


def with_threshold(gold: int) -> list[dict]:
    tiers = [dict(t) for t in WEALTH_TIERS]
    tiers[2] = {**tiers[2], "condition": {"attr": "aum_avg_3m", "op": "gte", "value": gold}}
    return tiers


@pytest.fixture
def admin(as_role) -> dict[str, str]:
    return as_role("admin")


@pytest.fixture
def create_policy(client, admin):
    async def create(key: str = "wealth", **overrides) -> dict:
        response = await client.post("/v1/tier-policies", json=policy_body(key, **overrides), headers=admin)
        assert response.status_code == 201, response.text
        return response.json()

    return create


def assert_problem(response, status: int, pointer: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    if pointer is not None:
        assert [e.get("pointer") for e in body["errors"]] == [pointer], body
    return body


async def test_created_policy_is_draft_version_1_listed_and_readable(client, admin, as_role, create_policy):
    created = await create_policy()
    assert created["policy_key"] == "wealth" and created["version"] == 1 and created["status"] == "draft"
    read_tiers = [{**tier, "labels": {}} for tier in WEALTH_TIERS]  # no label in other languages given
    assert created["tiers"] == read_tiers and created["downgrade_grace_days"] == 90
    assert created["created_by"] == "test-admin"
    listed = (await client.get("/v1/tier-policies", headers=admin)).json()["items"]
    assert [(p["policy_key"], p["active_version"], p["latest_version"]) for p in listed] == [("wealth", None, 1)]
    policy = (await client.get("/v1/tier-policies/wealth", headers=admin)).json()
    assert [(v["version"], v["status"], v["tier_codes"]) for v in policy["versions"]] == [
        (1, "draft", ["private", "wealth", "gold", "mass"])
    ]
    version = await client.get("/v1/tier-policies/wealth/versions/1", headers=admin)
    assert version.status_code == 200 and version.headers["etag"].startswith('"')
    assert version.json()["tiers"] == read_tiers
    assert_problem(await client.post("/v1/tier-policies", json=policy_body(), headers=admin), 409)
    assert_problem(await client.get("/v1/tier-policies/nope", headers=admin), 404)
    assert_problem(await client.get("/v1/tier-policies/wealth/versions/9", headers=admin), 404)
    assert (await client.get("/v1/tier-policies", headers=as_role("app"))).status_code == 403


@pytest.mark.parametrize(
    ("tiers", "pointer"),
    [
        (
            [
                {
                    "code": "a",
                    "label": "A",
                    "rank": 1,
                    "condition": {
                        "all": [
                            {"attr": "aum", "op": "gte", "value": 1},
                            {"any": [{"attr": "aum_avg", "op": "gte", "value": 1}]},
                        ]
                    },
                },
                {"code": "b", "label": "B", "rank": 0, "condition": {"always": True}},
            ],
            "/tiers/0/condition/all/1/any/0/attr",
        ),
        (
            [
                {"code": "a", "label": "A", "rank": 1, "condition": {"always": True}},
                {
                    "code": "b",
                    "label": "B",
                    "rank": 1,
                    "condition": {"attr": "tenure_months", "op": "gte", "value": "ten"},
                },
            ],
            "/tiers/1",
        ),
        (
            [
                {
                    "code": "b",
                    "label": "B",
                    "rank": 1,
                    "condition": {"attr": "tenure_months", "op": "gte", "value": "ten"},
                }
            ],
            "/tiers/0/condition/value",
        ),
        ([{"code": "a", "label": "A", "rank": 1, "condition": {"all": []}}], "/tiers/0/condition/all"),
        (
            [
                {"code": "a", "label": "A", "rank": 1, "condition": {"attr": "aum", "op": "gt", "value": 1}},
                {"code": "a", "label": "A2", "rank": 0, "condition": {"always": True}},
            ],
            "/tiers/1/code",
        ),
        ([], "/tiers"),
        ([{"code": "Bad-Code", "label": "A", "rank": 1, "condition": {"always": True}}], "/tiers/0/code"),
    ],
)
async def test_invalid_tiers_are_422_pointing_at_the_node(client, admin, tiers, pointer):
    response = await client.post("/v1/tier-policies", json=policy_body(tiers=tiers), headers=admin)
    body = assert_problem(response, 422)
    assert pointer in [e.get("pointer") for e in body["errors"]], body
    assert (await client.get("/v1/tier-policies/wealth", headers=admin)).status_code == 404


async def test_unreachable_tier_says_which_tier_matches_first(client, admin):
    tiers = [
        {"code": "all", "label": "All", "rank": 1, "condition": {"always": True}},
        {"code": "never", "label": "Never", "rank": 0, "condition": {"always": True}},
    ]
    body = assert_problem(
        await client.post("/v1/tier-policies", json=policy_body(tiers=tiers), headers=admin), 422, "/tiers/1"
    )
    assert "can never match: tier 0" in body["errors"][0]["detail"]


async def test_too_deep_condition_is_422_at_the_deep_node(client, admin):
    condition: dict = {"attr": "aum", "op": "gte", "value": 1}
    for _ in range(9):
        condition = {"not": condition}
    tiers = [{"code": "deep", "label": "Deep", "rank": 1, "condition": condition}]
    body = assert_problem(await client.post("/v1/tier-policies", json=policy_body(tiers=tiers), headers=admin), 422)
    assert body["errors"][0]["pointer"].startswith("/tiers/0/condition/not/not")


async def test_editing_a_draft_needs_a_fresh_if_match_and_only_drafts_change(client, admin, create_policy):
    await create_policy()
    url = "/v1/tier-policies/wealth/versions/1"
    etag = (await client.get(url, headers=admin)).headers["etag"]
    edit = {"tiers": with_threshold(60000), "downgrade_grace_days": 30, "description": "raised gold"}
    assert_problem(await client.put(url, json=edit, headers=admin), 428)
    assert_problem(await client.put(url, json=edit, headers={**admin, "If-Match": 'W/"1-1"'}), 412)
    fresh = await client.put(url, json=edit, headers={**admin, "If-Match": etag})
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["tiers"][2]["condition"]["value"] == 60000 and fresh.json()["downgrade_grace_days"] == 30
    assert fresh.headers["etag"] != etag
    assert_problem(await client.put(url, json=edit, headers={**admin, "If-Match": etag}), 412)  # now stale
    bad = {"tiers": [{"code": "x", "label": "X", "rank": 1, "condition": {"attr": "nope", "op": "eq", "value": 1}}]}
    assert_problem(
        await client.put(url, json=bad, headers={**admin, "If-Match": fresh.headers["etag"]}),
        422,
        "/tiers/0/condition/attr",
    )
    await client.post(f"{url}/activate", headers=admin)
    current = (await client.get(url, headers=admin)).headers["etag"]
    assert_problem(await client.put(url, json=edit, headers={**admin, "If-Match": current}), 409)


async def test_activation_retires_the_previous_version_and_rollback_is_audited(client, admin, create_policy):
    await create_policy()
    base = "/v1/tier-policies/wealth"
    v2 = await client.post(
        f"{base}/versions", json={"tiers": with_threshold(40000), "downgrade_grace_days": 60}, headers=admin
    )
    assert v2.status_code == 201 and v2.json()["version"] == 2 and v2.json()["status"] == "draft"
    v3 = await client.post(f"{base}/versions", json={"copy_from": 2}, headers=admin)
    assert v3.json()["version"] == 3 and v3.json()["tiers"] == v2.json()["tiers"]
    assert v3.json()["downgrade_grace_days"] == 60

    assert (await client.post(f"{base}/versions/1/activate", headers=admin)).json()["status"] == "active"
    activated = await client.post(f"{base}/versions/2/activate", headers=admin)
    assert activated.status_code == 200 and activated.json()["status"] == "active"
    statuses = {v["version"]: v["status"] for v in (await client.get(base, headers=admin)).json()["versions"]}
    assert statuses == {1: "retired", 2: "active", 3: "draft"}
    rolled_back = await client.post(f"{base}/versions/1/activate", headers=admin)
    assert rolled_back.json()["status"] == "active" and rolled_back.json()["retired_at"] is None
    policy = (await client.get(base, headers=admin)).json()
    assert policy["active_version"] == 1
    assert {v["version"]: v["status"] for v in policy["versions"]} == {1: "active", 2: "retired", 3: "draft"}
    retired = await client.post(f"{base}/versions/1/retire", headers=admin)
    assert retired.json()["status"] == "retired"
    assert (await client.get(base, headers=admin)).json()["active_version"] is None
    assert_problem(await client.post(f"{base}/versions/1/retire", headers=admin), 409)

    changes = (await client.get(f"{base}/changes", headers=admin)).json()["items"]
    assert [(c["action"], c["version"]) for c in changes] == [
        ("create", 1),
        ("add_version", 2),
        ("add_version", 3),
        ("activate", 1),
        ("activate", 2),
        ("rollback", 1),
        ("retire", 1),
    ]
    assert {c["actor"] for c in changes} == {"test-admin"}
    assert changes[5]["detail"] == {"before": {"active_version": 2}, "after": {"active_version": 1}}


async def test_the_database_allows_only_one_active_version(client, admin, create_policy, session):
    await create_policy()
    await client.post("/v1/tier-policies/wealth/versions", json={"copy_from": 1}, headers=admin)
    await client.post("/v1/tier-policies/wealth/versions/1/activate", headers=admin)
    policy_id = await session.scalar(select(TierPolicy.id).where(TierPolicy.key == "wealth"))
    with pytest.raises(IntegrityError) as caught:
        async with session.begin_nested():
            await session.execute(
                text("UPDATE tier_policy_version SET status = 'active' WHERE policy_id = :p AND version = 2"),
                {"p": policy_id},
            )
    assert caught.value.orig.sqlstate == "23505"
    active = await session.scalars(
        select(TierPolicyVersion.version).where(
            TierPolicyVersion.policy_id == policy_id, TierPolicyVersion.status == "active"
        )
    )
    assert list(active) == [1]


async def test_what_if_returns_the_tier_and_explains_each_tier_up_to_the_match(client, admin, create_policy):
    await create_policy()
    response = await client.post(
        "/v1/tier-policies/wealth/versions/1/evaluate",
        headers=admin,
        json={"attributes": {"aum_avg_3m": 620000, "tenure_months": 40}},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["tier"], result["label"], result["rank"]) == ("wealth", "Wealth", 30)
    assert [(e["tier"], e["matched"]) for e in result["explanation"]] == [("private", False), ("wealth", True)]
    private, wealth = result["explanation"]
    [leaf] = private["conditions"]
    assert (leaf["pointer"], leaf["attribute"], leaf["operator"], leaf["threshold"], leaf["result"]) == (
        "/tiers/0/condition",
        "aum_avg_3m",
        "gte",
        10000000,
        False,
    )
    assert Decimal(leaf["value"]) == 620000  # numbers come back as exact decimal strings
    assert [(c["pointer"], c["threshold"], Decimal(str(c["value"])), c["result"]) for c in wealth["conditions"]] == [
        ("/tiers/1/condition/all/0", 500000, 620000, True),
        ("/tiers/1/condition/all/1", 12, 40, True),
    ]

    short_tenure = (
        await client.post(
            "/v1/tier-policies/wealth/versions/1/evaluate",
            headers=admin,
            json={"attributes": {"aum_avg_3m": 620000, "tenure_months": 3}},
        )
    ).json()
    assert short_tenure["tier"] == "gold"
    nobody = (
        await client.post("/v1/tier-policies/wealth/versions/1/evaluate", headers=admin, json={"attributes": {}})
    ).json()
    assert nobody["tier"] == "mass" and nobody["explanation"][-1] == {"tier": "mass", "matched": True, "conditions": []}
    bad = await client.post(
        "/v1/tier-policies/wealth/versions/1/evaluate", headers=admin, json={"attributes": {"aum_avg_3m": "lots"}}
    )
    assert_problem(bad, 422, "/attributes/aum_avg_3m")


async def _customer_with_aum(client, as_role, external_id: str, amount: str) -> None:
    response = await client.put(f"/v1/customers/{external_id}", json=customer_body(), headers=as_role("integration"))
    assert response.status_code in (200, 201), response.text
    holdings = {"holdings": [{"product_code": "savings_account", "balance": amount, "as_of": date.today().isoformat()}]}
    response = await client.put(f"/v1/customers/{external_id}/holdings", json=holdings, headers=as_role("integration"))
    assert response.status_code == 200, response.text


async def test_simulation_gives_the_distribution_and_migration_against_the_active_version(
    client, admin, as_role, session, create_policy
):
    await add_products(session)
    await session.commit()
    for external_id, amount in [
        ("S1", "20000.00"),
        ("S2", "45000.00"),
        ("S3", "70000.00"),
        ("S4", "600000.00"),
        ("S5", "12000000.00"),
    ]:
        await _customer_with_aum(client, as_role, external_id, amount)
    await create_policy()
    base = "/v1/tier-policies/wealth"
    alone = (await client.post(f"{base}/versions/1/simulate", headers=admin)).json()
    assert alone["population"] == 5 and alone["against_version"] is None
    assert [(d["tier"], d["customers"], d["share"]) for d in alone["distribution"]] == [
        ("private", 1, 0.2),
        ("wealth", 1, 0.2),
        ("gold", 1, 0.2),
        ("mass", 2, 0.4),
    ]
    assert {(m["from"], m["to"], m["customers"]) for m in alone["migration"]} == {
        (None, "private", 1),
        (None, "wealth", 1),
        (None, "gold", 1),
        (None, "mass", 2),
    }

    await client.post(f"{base}/versions/1/activate", headers=admin)
    await client.post(f"{base}/versions", json={"tiers": with_threshold(40000)}, headers=admin)
    simulated = await client.post(f"{base}/versions/2/simulate", headers=admin)
    assert simulated.status_code == 200, simulated.text
    result = simulated.json()
    assert result["against_version"] == 1 and result["population"] == 5
    assert {d["tier"]: d["customers"] for d in result["distribution"]} == {
        "private": 1,
        "wealth": 1,
        "gold": 2,
        "mass": 1,
    }
    assert {(m["from"], m["to"], m["customers"]) for m in result["migration"]} == {
        ("private", "private", 1),
        ("wealth", "wealth", 1),
        ("gold", "gold", 1),
        ("mass", "gold", 1),
        ("mass", "mass", 1),
    }
    assert (result["upgrades"], result["downgrades"], result["unchanged"]) == (1, 0, 4)
    statuses = {v["version"]: v["status"] for v in (await client.get(base, headers=admin)).json()["versions"]}
    assert statuses == {1: "active", 2: "draft"}  # simulation writes nothing


async def test_default_policies_load_once_activated_valid_and_simulate(client, admin, session):
    created = await policies.load_default_policies(session)
    assert created == ["wealth", "lifecycle", "loyalty", "needs"]
    assert await policies.load_default_policies(session) == []  # idempotent
    await session.commit()
    listed = (await client.get("/v1/tier-policies", headers=admin)).json()["items"]
    active = {p["policy_key"]: p["active_version"] for p in listed}
    assert active == {"wealth": 1, "lifecycle": 1, "loyalty": 1, "needs": 1}
    changes = (await client.get("/v1/tier-policies/needs/changes", headers=admin)).json()["items"]
    assert [(c["action"], c["actor"]) for c in changes] == [("create", "system"), ("activate", "system")]
    for key in created:
        version = (await client.get(f"/v1/tier-policies/{key}/versions/1", headers=admin)).json()
        # each default passes the same validation as a new draft
        again = await client.post(
            f"/v1/tier-policies/{key}/versions",
            headers=admin,
            json={"tiers": version["tiers"], "downgrade_grace_days": version["downgrade_grace_days"]},
        )
        assert again.status_code == 201, again.text
        simulated = await client.post(f"/v1/tier-policies/{key}/versions/2/simulate", headers=admin)
        assert simulated.status_code == 200, simulated.text
        assert simulated.json()["against_version"] == 1
    lifecycle = (
        await client.post(
            "/v1/tier-policies/lifecycle/versions/1/evaluate",
            headers=admin,
            json={"attributes": {"tenure_months": 24, "days_since_last_txn": 5, "txn_count_90d": 3, "logins_30d": 0}},
        )
    ).json()
    assert lifecycle["tier"] == "declining"
