"""Recommendation feedback through HTTP: stored once, counted once (also when retried or raced), bad events
reported one by one, late and out-of-order events counted correctly, conversions recorded as holdings."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.feedback import service
from app.feedback.schemas import FeedbackEventIn
from tests.factories import add_products, delete_customers, inserting_customers, serve_list
from tests.feedback.helpers import event, make_customer, serve_items


@pytest.fixture
async def customers(client, as_role, session):
    await add_products(session)
    await session.commit()
    await make_customer(client, as_role, "F1", "1000.00")
    await make_customer(client, as_role, "F2", "1000.00")


async def stats(session, product: str) -> dict:
    row = (
        await session.execute(
            text(
                "SELECT count(*) AS shards, coalesce(sum(impressions), 0) AS impressions,"
                " coalesce(sum(clicks), 0) AS clicks,"
                " coalesce(sum(accepts), 0) AS accepts, coalesce(sum(dismisses), 0) AS dismisses,"
                " coalesce(sum(converts), 0) AS converts FROM propensity_stat WHERE product_code = :p"
            ),
            {"p": product},
        )
    ).one()
    return dict(row._mapping)


async def post(client, as_role, events: list[dict]):
    response = await client.post("/v1/feedback/events", json={"events": events}, headers=as_role("app"))
    assert response.status_code == 200, response.text
    return response.json()


async def test_events_are_counted_once_and_a_retried_batch_changes_nothing(client, as_role, session, customers):
    fund, cover = await serve_items(session, "F1", ["balanced_fund", "life_insurance"], tier_code="gold")
    batch = [
        event("e1", fund, "F1", "impression"),
        event("e2", fund, "F1", "click"),
        event("e3", cover, "F1", "impression"),
        event("e4", cover, "F1", "dismiss"),
    ]
    first = await post(client, as_role, batch)
    assert first == {"received": 4, "accepted": 4, "duplicates": 0, "rejected": 0, "rejections": []}
    expected = {"impressions": 1, "clicks": 1, "accepts": 0, "dismisses": 0, "converts": 0}
    assert {k: v for k, v in (await stats(session, "balanced_fund")).items() if k != "shards"} == expected
    again = await post(client, as_role, batch)
    assert again == {"received": 4, "accepted": 0, "duplicates": 4, "rejected": 0, "rejections": []}
    assert (await stats(session, "balanced_fund"))["impressions"] == 1
    assert (await stats(session, "life_insurance"))["dismisses"] == 1
    stored = (
        await session.execute(
            text("SELECT product_code, tier_code, channel, strategy FROM feedback_event WHERE event_id = 'e1'")
        )
    ).one()
    assert tuple(stored) == ("balanced_fund", "gold", "mobile", "personalised")  # channel from the served list
    tiers = (await session.execute(text("SELECT DISTINCT tier_code FROM propensity_stat"))).scalars().all()
    assert tiers == ["gold"]


async def test_bad_events_are_reported_one_by_one_and_good_ones_kept(client, as_role, session, customers):
    (mine,) = await serve_items(session, "F1", ["balanced_fund"])
    (theirs,) = await serve_items(session, "F2", ["equity_fund"])
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    batch = [
        event("ok-1", mine, "F1", "impression"),
        event("bad-unknown", uuid.uuid4(), "F1", "click"),
        event("bad-owner", theirs, "F1", "click"),
        event("bad-type", mine, "F1", "like"),
        {**event("bad-time", mine, "F1", "click"), "occurred_at": future},
        event("bad-product", mine, "F1", "click", product_code="equity_fund"),
        {**event("bad-naive", mine, "F1", "click"), "occurred_at": "2026-11-01T10:00:00"},
        event("ok-2", mine, "F1", "click", product_code="balanced_fund", channel="web"),
    ]
    result = await post(client, as_role, batch)
    assert (result["received"], result["accepted"], result["duplicates"], result["rejected"]) == (8, 2, 0, 6)
    by_index = {r["index"]: r for r in result["rejections"]}
    assert sorted(by_index) == [1, 2, 3, 4, 5, 6]
    assert by_index[1]["pointer"] == "/events/1/recommendation_id" and "no recommendation" in by_index[1]["detail"]
    assert by_index[2]["pointer"] == "/events/2/recommendation_id" and "not made to" in by_index[2]["detail"]
    assert by_index[3]["pointer"] == "/events/3/type"
    assert by_index[4]["pointer"] == "/events/4/occurred_at" and "future" in by_index[4]["detail"]
    assert by_index[5]["pointer"] == "/events/5/product_code"
    assert by_index[6]["pointer"] == "/events/6/occurred_at"
    assert (await stats(session, "balanced_fund"))["clicks"] == 1
    channel = await session.scalar(text("SELECT channel FROM feedback_event WHERE event_id = 'ok-2'"))
    assert channel == "web"


async def test_an_id_that_names_no_item_of_a_served_list_is_unknown(client, as_role, session, customers):
    """An item's id is its list's id with its rank in the low bits: the second item of a list is attributed to its
    own product; the list's id itself (rank 0) and a rank past the list's end name no item."""
    first, second = await serve_items(session, "F1", ["balanced_fund", "life_insurance"])
    list_id = uuid.UUID(int=first.int & ~0xF)
    batch = [
        event("rank-2", second, "F1", "click"),
        event("rank-0", list_id, "F1", "click"),
        event("rank-3", uuid.UUID(int=list_id.int | 3), "F1", "click"),
        event("rank-15", uuid.UUID(int=list_id.int | 15), "F1", "click"),
    ]
    result = await post(client, as_role, batch)
    assert (result["accepted"], result["rejected"]) == (1, 3)
    assert all("no recommendation" in r["detail"] for r in result["rejections"])
    assert await session.scalar(text("SELECT product_code FROM feedback_event WHERE event_id = 'rank-2'")) == (
        "life_insurance"
    )


async def test_a_batch_of_wrong_shape_is_refused_whole(client, as_role, customers):
    for body in ({"events": []}, {"events": "x"}, {"events": [{}] * 1001}, {"other": 1}):
        response = await client.post("/v1/feedback/events", json=body, headers=as_role("app"))
        assert response.status_code == 422, body
        assert response.headers["content-type"] == "application/problem+json"


async def test_late_and_out_of_order_events_count_once_and_the_same(client, as_role, session, customers):
    items = await serve_items(session, "F1", ["balanced_fund"] * 1 + ["equity_fund"])
    fund, equity = items
    in_order = [
        event("o1", fund, "F1", "impression", 50),
        event("o2", fund, "F1", "click", 40),
        event("o3", fund, "F1", "accept", 30),
        event("o4", equity, "F1", "impression", 20),
    ]
    # the later events arrive first, the earliest one a batch later (and once more, as a retry)
    await post(client, as_role, list(reversed(in_order[1:])))
    late = await post(client, as_role, [in_order[0], in_order[2]])
    assert (late["accepted"], late["duplicates"]) == (1, 1)
    assert {k: v for k, v in (await stats(session, "balanced_fund")).items() if k != "shards"} == {
        "impressions": 1,
        "clicks": 1,
        "accepts": 1,
        "dismisses": 0,
        "converts": 0,
    }
    report = await client.get("/v1/reports/recommendation-funnel", headers=as_role("admin"))
    row = next(r for r in report.json()["rows"] if r["product_code"] == "balanced_fund")
    assert (row["impressions"], row["clicks"], row["accepts"], row["conversions"]) == (1, 1, 1, 0)


async def test_a_conversion_records_the_holding_once_and_refreshes_tiers(client, as_role, session, customers):
    (fund,) = await serve_items(session, "F1", ["balanced_fund"])
    result = await post(
        client,
        as_role,
        [
            event("c1", fund, "F1", "accept", 30),
            event("c2", fund, "F1", "convert", 20),
            event("c3", fund, "F1", "convert", 10),
        ],
    )
    assert result["accepted"] == 3
    holdings = (await client.get("/v1/customers/F1/holdings", headers=as_role("app"))).json()["holdings"]
    fund_holding = next(h for h in holdings if h["product_code"] == "balanced_fund")
    opened = (datetime.now(UTC) - timedelta(minutes=20)).date().isoformat()
    assert fund_holding["balance"] == "0.00" and fund_holding["opened_at"] == opened
    customer = (await client.get("/v1/customers/F1", headers=as_role("app"))).json()
    assert customer["metrics"]["products_held_count"] == 2
    assert (await stats(session, "balanced_fund"))["converts"] == 2


async def test_raced_retries_count_once(engine, session):
    """Two requests carrying the same events, on separate connections that really commit."""
    tag = uuid.uuid4().hex[:8]
    product, external_id = f"race_{tag}", f"RACE{tag}"
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO product (code, name, category, risk_level, channels) "
                "VALUES (:p, 'Race fund', 'fund', 3, '{mobile}')"
            ),
            {"p": product},
        )
        customer_id = await conn.scalar(
            text(
                inserting_customers(
                    "INSERT INTO customer (external_id, segment, onboarded_at) VALUES (:e, 'retail', now())"
                )
            ),
            {"e": external_id},
        )
        [recommendation] = await serve_list(conn, customer_id, [product], tier_code="race")
    now = datetime.now(UTC)
    events = [
        (
            i,
            FeedbackEventIn(
                event_id=f"r{i}",
                recommendation_id=recommendation,
                customer_id=external_id,
                type="impression" if i % 2 else "click",
                occurred_at=now - timedelta(minutes=i),
            ),
        )
        for i in range(200)
    ]
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def deliver() -> int:
        async with sessions() as own:
            intake = await service.ingest_feedback(own, events)
            await own.commit()
            return intake.accepted

    try:
        accepted = await asyncio.gather(deliver(), deliver(), deliver())
        assert sorted(accepted) == [0, 0, 200]
        async with engine.connect() as conn:
            counts = (
                await conn.execute(
                    text("SELECT sum(impressions), sum(clicks) FROM propensity_stat WHERE product_code = :p"),
                    {"p": product},
                )
            ).one()
            stored = await conn.scalar(
                text("SELECT count(*) FROM feedback_event WHERE customer_id = :c"), {"c": customer_id}
            )
        assert tuple(counts) == (100, 100) and stored == 200
    finally:
        async with engine.begin() as conn:
            await delete_customers(conn, "id = :c", {"c": customer_id})
            await conn.execute(text("DELETE FROM propensity_stat WHERE product_code = :p"), {"p": product})
            await conn.execute(text("DELETE FROM product WHERE code = :p"), {"p": product})
