"""The hot read of GET /v1/customers/{id}/recommendations (app/core/hotpath.py) answers as the FastAPI route does:
the same ranking in the same document, held to the RecommendationsRead schema, every served list stored, and the
same problem+json for every error; a query it cannot read as the route would goes on to FastAPI."""

import re
from types import SimpleNamespace

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from app.main import HOT_READS
from app.recommendations.schemas import RecommendationQuery, RecommendationsRead
from tests.factories import WEALTH_TIERS
from tests.recommendations.test_recommendations import make_customer

RECOMMENDATIONS = next(read for read in HOT_READS if read.path.endswith("/recommendations"))


def _without_ids(document: dict) -> dict:
    return {
        **document,
        "items": [{k: v for k, v in item.items() if k != "recommendation_id"} for item in document["items"]],
    }


async def _served_lists(session, external_id: str) -> int:
    return await session.scalar(
        text(
            "SELECT count(*) FROM recommendation_list l JOIN customer c ON c.id = l.customer_id "
            "WHERE c.external_id = :e"
        ),
        {"e": external_id},
    )


@pytest.mark.parametrize(
    "query",
    [
        "explore=false&explain=true&limit=10",
        "seed=7&limit=4&channel=web",
        "explore=false&exclude=bond_fund&exclude=equity_fund",
        "explore=false&channel=mobile&unknown=1",  # an unknown parameter: FastAPI answers, and ignores it
    ],
)
async def test_hot_and_routed_give_the_same_ranking_in_the_schema(client, routed, as_role, bank, session, query):
    await make_customer(
        client, as_role, "HR1", risk=4, holdings=[("current_account", "5000.00"), ("savings_account", "250000.00")]
    )
    path = f"/v1/customers/HR1/recommendations?{query}"
    hot, plain = await client.get(path, headers=as_role("app")), await routed.get(path, headers=as_role("app"))
    assert hot.status_code == plain.status_code == 200, hot.text
    assert hot.headers["content-type"] == plain.headers["content-type"] == "application/json"
    assert _without_ids(hot.json()) == _without_ids(plain.json())
    assert RecommendationsRead.model_validate(hot.json()).model_dump(mode="json", exclude_unset=True) == hot.json()
    assert hot.json()["items"] and "current_account" not in [i["product"]["product_code"] for i in hot.json()["items"]]
    assert await _served_lists(session, "HR1") == 2  # each path stored what it served


@pytest.mark.parametrize(
    "path, role, status",
    [
        ("/v1/customers/HR2/recommendations", None, 401),
        ("/v1/customers/HR2/recommendations", "integration", 403),  # lacks recommendations:read
        ("/v1/customers/NOBODY/recommendations", "app", 404),
        ("/v1/customers/-bad-/recommendations", "app", 422),
        ("/v1/customers/HR2/recommendations?limit=0", "app", 422),
        ("/v1/customers/HR2/recommendations?limit=3&limit=4", "app", 200),
        ("/v1/customers/HR2/recommendations?channel=fax", "app", 422),
        ("/v1/customers/HR2/recommendations?explain=maybe", "app", 422),
    ],
)
async def test_errors_are_the_same_problem_json_on_both_paths(client, routed, as_role, bank, path, role, status):
    await make_customer(client, as_role, "HR2")
    headers = as_role(role) if role else {}
    hot, plain = await client.get(path, headers=headers), await routed.get(path, headers=headers)
    assert hot.status_code == plain.status_code == status, hot.text
    if status == 200:  # explore is on: the rankings are samples, their length is the route's reading of limit
        assert len(hot.json()["items"]) == len(plain.json()["items"]) == 4
    else:
        assert hot.json() == plain.json() and hot.headers["content-type"] == "application/problem+json"


def test_the_hot_path_reads_the_queries_the_route_takes_and_passes_on_the_rest():
    parse = RECOMMENDATIONS.parse_query
    assert parse(b"") == RecommendationQuery()
    assert parse(
        b"limit=5&channel=web&exclude=ab&exclude=b-c&explain=true&seed=3&explore=false"
    ) == RecommendationQuery(limit=5, channel="web", exclude=["ab", "b-c"], explain=True, seed=3, explore=False)
    for passed_on in (
        b"limit=0",
        b"limit=11",
        b"limit=x",
        b"limit=5.0",
        b"channel=fax",
        b"explain=maybe",
        b"explore=off",
        b"explain=1",
        b"seed=-1",
        b"exclude=b%20c",
        b"exclude=%00",
        b"limit=3&limit=4",
        b"other=1",
        b"exclude=" + b"&exclude=".join([b"p"] * 51),
    ):
        assert parse(passed_on) is False, passed_on


def test_a_query_string_is_read_once_and_its_model_shared_read_only():
    parse = RECOMMENDATIONS.parse_query
    first = parse(b"limit=4&channel=web")
    assert parse(b"limit=4&channel=web") is first and first == RecommendationQuery(limit=4, channel="web")
    with pytest.raises(ValidationError):
        first.limit = 5
    long = b"explore=false&" + b"&".join([b"exclude=" + b"x" * 30] * 20)  # longer than the cache keeps: read each time
    assert parse(long) == parse(long) and parse(long) is not parse(long)


async def test_a_catalog_change_is_seen_on_the_next_request(client, as_role, bank, session):
    await make_customer(client, as_role, "HR3", risk=5)
    first = await client.get("/v1/customers/HR3/recommendations?explore=false&limit=10", headers=as_role("app"))
    assert "bond_fund" in [i["product"]["product_code"] for i in first.json()["items"]]
    # plain SQL, as another instance or a migration might write it: the triggers set the catalog's version
    await session.execute(text("UPDATE product SET is_active = false WHERE code = 'bond_fund'"))
    # a set condition (its value binds as an array): only for customers without a savings account
    await session.execute(
        text("UPDATE product SET eligibility = CAST(:e AS jsonb) WHERE code = 'balanced_fund'"),
        {"e": '{"attr": "held_products", "op": "contains_none", "value": ["savings_account", "x"]}'},
    )
    await session.commit()
    second = await client.get(
        "/v1/customers/HR3/recommendations?explore=false&limit=10&explain=true", headers=as_role("app")
    )
    assert "bond_fund" not in [i["product"]["product_code"] for i in second.json()["items"]]
    assert {"product_code": "bond_fund", "filter": "inactive", "detail": "not on sale now"} in second.json()[
        "filtered_out"
    ]
    balanced = next(i for i in second.json()["items"] if i["product"]["product_code"] == "balanced_fund")
    assert {
        "code": "ELIGIBLE",
        "text": "held_products ['current_account'] contains_none ['savings_account', 'x']",
        "value": {
            "pointer": "/eligibility",
            "attribute": "held_products",
            "operator": "contains_none",
            "threshold": ["savings_account", "x"],
            "value": ["current_account"],
            "result": True,
        },
    } in balanced["reasons"]
    await make_customer(client, as_role, "HR4", risk=5, holdings=[("savings_account", "10.00")])
    saver = await client.get(
        "/v1/customers/HR4/recommendations?explore=false&limit=10&explain=true", headers=as_role("app")
    )
    assert {
        "product_code": "balanced_fund",
        "filter": "not_eligible",
        "detail": "eligibility condition not met",
    } in saver.json()["filtered_out"]

    # a custom attribute declared through the API: a product may now be eligible by it
    assert (
        await client.put("/v1/attributes/custom/branch", json={"type": "string"}, headers=as_role("admin"))
    ).status_code in (200, 201)
    await session.execute(text("UPDATE customer SET attributes = '{\"branch\": \"north\"}' WHERE external_id = 'HR4'"))
    await session.execute(
        text("UPDATE product SET eligibility = CAST(:e AS jsonb) WHERE code = 'equity_fund'"),
        {"e": '{"attr": "branch", "op": "eq", "value": "south"}'},
    )
    await session.commit()
    saver = await client.get(
        "/v1/customers/HR4/recommendations?explore=false&limit=10&explain=true", headers=as_role("app")
    )
    assert {
        "product_code": "equity_fund",
        "filter": "not_eligible",
        "detail": "eligibility condition not met",
    } in saver.json()["filtered_out"]


async def test_the_catalog_version_changes_with_every_committed_catalog_write_and_never_repeats(session):
    async def version() -> int:
        return await session.scalar(text("SELECT version FROM catalog_version"))

    seen = [await version()]
    for statement in (
        "INSERT INTO product (code, name, category, risk_level, channels) "
        "VALUES ('v_probe', 'Probe', 'deposit', 1, '{mobile}')",
        "UPDATE product SET name = 'Probe 2' WHERE code = 'v_probe'",
        "UPDATE product SET name = 'nobody' WHERE false",  # a statement that changes no row
        "INSERT INTO custom_attribute_definition (name, type) VALUES ('v_probe', 'string')",
        "DELETE FROM custom_attribute_definition WHERE name = 'v_probe'",
    ):
        await session.execute(text(statement))
        seen.append(await version())
    assert len(set(seen)) == len(seen) and seen == sorted(seen)
    await session.rollback()
    rolled_back = await version()
    assert rolled_back == seen[0]  # a rolled-back write leaves the version as it was
    await session.execute(text("UPDATE product SET name = name WHERE false"))
    assert await version() > seen[-1]  # and its numbers are never given out again


async def test_eligibility_reasons_name_the_comparisons_that_held(client, routed, as_role, bank, session):
    """A conjunction's reasons come from the attribute values (every comparison held); a condition with `any`
    or `not` from each comparison's own result: only those that held are reasons."""
    await session.execute(
        text("UPDATE product SET updated_at = clock_timestamp(), eligibility = CAST(:e AS jsonb) WHERE code = :c"),
        [
            {
                "c": "balanced_fund",
                "e": '{"any": [{"attr": "aum", "op": "gte", "value": 1000000}, '
                '{"attr": "segment", "op": "eq", "value": "retail"}]}',
            },
            {
                "c": "equity_fund",
                "e": '{"all": [{"attr": "aum", "op": "gte", "value": 100}, '
                '{"all": [{"attr": "tenure_months", "op": "gte", "value": 12}]}]}',
            },
        ],
    )
    await session.commit()
    await make_customer(client, as_role, "HR6", risk=5, holdings=[("current_account", "2500.50")])
    path = "/v1/customers/HR6/recommendations?explore=false&limit=10"
    hot, plain = await client.get(path, headers=as_role("app")), await routed.get(path, headers=as_role("app"))
    assert _without_ids(hot.json()) == _without_ids(plain.json()) and hot.json()["strategy"] == "personalised"
    reasons = {
        i["product"]["product_code"]: [r for r in i["reasons"] if r["code"] == "ELIGIBLE"] for i in hot.json()["items"]
    }
    assert [r["text"] for r in reasons["balanced_fund"]] == ["segment retail = retail"]  # not the aum that failed
    assert reasons["balanced_fund"][0]["value"]["pointer"] == "/eligibility/any/1"
    assert [r["value"]["attribute"] for r in reasons["equity_fund"]] == ["aum", "tenure_months"]
    assert reasons["equity_fund"][0]["text"] == "aum 2,500 >= 100"  # 2,500.50 shown rounded
    assert reasons["equity_fund"][0]["value"]["value"] == "2500.50" and reasons["equity_fund"][1]["value"]["result"]


async def test_ranking_statistics_counted_elsewhere_arrive_within_their_age(
    as_role, bank, session, test_settings, sessionmaker
):
    """Counts another instance (or the statistics job) wrote reach this instance's ranking once its copy is older
    than ranking_stats_seconds; until then the instance ranks with the copy it has."""
    import httpx

    from app.main import create_app

    async def top(settings) -> list[str]:
        app = create_app(settings, sessionmaker=sessionmaker)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as api:
            if not await session.scalar(text("SELECT count(*) FROM customer WHERE external_id = 'HR7'")):
                await make_customer(api, as_role, "HR7", risk=5)
            first = await api.get("/v1/customers/HR7/recommendations?explore=false&limit=10", headers=as_role("app"))
            await session.execute(
                text(
                    "INSERT INTO propensity_stat (product_code, tier_code, shard, impressions, clicks, accepts, "
                    "dismisses, converts) VALUES ('equity_fund', '-', 0, 50, 0, 50, 0, 0) "
                    "ON CONFLICT (product_code, tier_code, shard) DO UPDATE SET impressions = 50, accepts = 50"
                )
            )
            await session.commit()
            again = await api.get("/v1/customers/HR7/recommendations?explore=false&limit=10", headers=as_role("app"))
            await session.execute(text("DELETE FROM propensity_stat"))
            await session.commit()
        return [[i["product"]["product_code"] for i in r.json()["items"]] for r in (first, again)]

    kept_first, kept_again = await top(test_settings.model_copy(update={"ranking_stats_seconds": 300}))
    assert kept_again == kept_first  # the instance's copy is still young: the same ranking
    fresh_first, fresh_again = await top(test_settings.model_copy(update={"ranking_stats_seconds": 0}))
    assert fresh_first == kept_first and fresh_again[0] == "equity_fund" != fresh_first[0]


async def test_the_hot_pool_plans_without_hash_and_merge_joins(engine, test_settings):
    """The hot reads' pool (one customer's rows per statement) plans nested loops over index scans; the app's
    other connections keep the planner's defaults."""
    from app.core.db import create_read_pool, read_connection

    settings = test_settings.model_copy(update={"read_pool_size": 1})
    pool = await create_read_pool(engine, settings)
    try:
        async with read_connection(SimpleNamespace(read_pool=pool, settings=settings)) as hot:
            assert [await hot.fetchval(f"SHOW {name}") for name in ("enable_hashjoin", "enable_mergejoin")] == [
                "off",
                "off",
            ]
            assert await hot.fetchval("SHOW tierwise.risk_valid_days") == str(test_settings.risk_assessment_valid_days)
    finally:
        await pool.close()
    async with engine.connect() as other:
        assert (await other.exec_driver_sql("SHOW enable_hashjoin")).scalar() == "on"


async def test_both_paths_write_the_schemas_own_bytes(client, routed, as_role, bank, session):
    """The hot path and the route serialize the same schema (app.core.serializers): the same bytes, and the bytes
    RecommendationsRead itself writes, for customers without a tier, with one, with an override, at risk of a
    downgrade, explained or not."""
    admin = as_role("admin")
    await make_customer(client, as_role, "B0", risk=2)  # evaluated by no policy: no tier
    assert (
        await client.post(
            "/v1/tier-policies",
            headers=admin,
            json={"policy_key": "wealth", "name": "Wealth", "tiers": WEALTH_TIERS, "downgrade_grace_days": 30},
        )
    ).status_code == 201
    assert (await client.post("/v1/tier-policies/wealth/versions/1/activate", headers=admin)).status_code == 200
    await session.execute(
        text("DELETE FROM tier_assignment WHERE customer_id = (SELECT id FROM customer WHERE external_id = 'B0')")
    )
    await session.commit()
    await make_customer(client, as_role, "B1", risk=4, holdings=[("savings_account", "80000.00")])
    await make_customer(client, as_role, "B2", risk=5, holdings=[("current_account", "10.00")])
    assert (
        await client.put(
            "/v1/customers/B2/tiers/wealth/override", headers=admin, json={"tier": "private", "reason": "Retention"}
        )
    ).status_code == 200
    await make_customer(client, as_role, "B3", risk=3, holdings=[("savings_account", "80000.00")])
    await session.execute(
        text(
            "UPDATE tier_assignment SET lower_since = now() - interval '3 days', "
            "qualified_code = 'mass' WHERE customer_id = "
            "(SELECT id FROM customer WHERE external_id = 'B3')"
        )
    )
    await session.commit()
    tiers = {}
    for external_id in ("B0", "B1", "B2", "B3"):
        for query in ("explore=false&limit=5", "seed=3&explain=true&limit=10"):
            path = f"/v1/customers/{external_id}/recommendations?{query}"
            hot, plain = await client.get(path, headers=as_role("app")), await routed.get(path, headers=as_role("app"))
            assert hot.status_code == plain.status_code == 200, hot.text
            assert _ids_blanked(hot.content) == _ids_blanked(plain.content)
            schema = RecommendationsRead.model_validate_json(hot.content).model_dump_json(exclude_unset=True)
            assert hot.content == schema.encode()
            tiers[external_id] = hot.json()["tier"]
    assert tiers == {"B0": None, "B1": "gold", "B2": "private", "B3": "gold"}


def _ids_blanked(document: bytes) -> bytes:
    return re.sub(rb'"recommendation_id":"[0-9a-f-]{36}"', b'"recommendation_id":""', document)
