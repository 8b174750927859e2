"""Served lists on the hot path: concurrent requests' lists are committed together, each request answers only once
its own list is stored (waiting with no connection of its own), and one list that cannot be stored fails only its
own request. Run on connections without a transaction, as the hot path's pool gives them, so on a database of its
own (the lists are committed)."""

import asyncio
import json
import time
import uuid
from decimal import Decimal

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from app.core.hotpath import Answer, answered
from app.core.migrations import upgrade_to_head
from app.recommendations.catalog import CatalogProduct
from app.recommendations.ranking import Ranked, RecommendationResult
from app.recommendations.served import ServedLists, item_ids, time_ordered_uuid
from tests.factories import inserting_customers


@pytest.fixture
async def pool(scratch_database):
    url = scratch_database()
    upgrade_to_head(url)
    pool = await asyncpg.create_pool(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False), min_size=4, max_size=4
    )
    await pool.execute(
        "INSERT INTO product (code, name, category, risk_level, channels) VALUES "
        "('bond_fund', 'Bond fund', 'fund', 2, '{mobile}'), "
        "('savings_account', 'Savings', 'deposit', 1, '{mobile}')"
    )
    await pool.execute(
        inserting_customers("INSERT INTO customer (external_id, segment, onboarded_at) VALUES ('W1', 'retail', now())")
    )
    yield pool
    await pool.close()


def served(customer_id: int, *codes: str) -> RecommendationResult:
    items = [
        Ranked(
            CatalogProduct(code, code, "fund", 1, 1.0, 1.0, ()),
            0.5,
            0.25,
            2.0,
            1.0,
            {},
            [{"code": "SUITABLE", "text": "risk R1 <= 3"}],
        )
        for code in codes
    ]
    return RecommendationResult(
        customer_id=customer_id, external_id="W1", tier=None, strategy="personalised", items=items, filtered=[]
    )


async def _write_all(pool, writer: ServedLists, results: list[RecommendationResult]) -> list:
    """Each result as a hot read serves it: read on a connection of the pool, given back, then the list awaited."""

    async def one(result):
        async with pool.acquire() as connection:
            await connection.fetchval("SELECT 1")
            rendered = Answer(b"{}", writer.submit(result, "mobile"))
        await answered(rendered)

    return await asyncio.gather(*(one(r) for r in results), return_exceptions=True)


async def test_concurrent_lists_are_committed_together(pool):
    customer_id = await pool.fetchval("SELECT id FROM customer WHERE external_id = 'W1'")
    writer = ServedLists(pool.acquire)
    results = [served(customer_id, "bond_fund", "savings_account") for _ in range(30)]
    assert await _write_all(pool, writer, results) == [None] * 30
    assert writer.statements < 30  # grouped: fewer statements than lists
    assert await pool.fetchval("SELECT count(*) FROM recommendation_list") == 30
    stored = {
        r["recommendation_id"]: (r["product_code"], r["rank"], r["list_id"])
        for r in await pool.fetch("SELECT recommendation_id, product_code, rank, list_id FROM recommendation_item")
    }
    for result in results:  # every id the caller got is stored, with its product and rank, both items in one list
        (first, rank_1, list_a), (second, rank_2, list_b) = (stored[rid] for rid in result.recommendation_ids)
        assert (first, rank_1, second, rank_2) == ("bond_fund", 1, "savings_account", 2) and list_a == list_b
    assert len({stored[r.recommendation_ids[0]][2] for r in results}) == 30


async def test_a_list_that_cannot_be_stored_fails_only_its_own_request(pool):
    customer_id = await pool.fetchval("SELECT id FROM customer WHERE external_id = 'W1'")
    writer = ServedLists(pool.acquire)
    results = [served(customer_id, "bond_fund") for _ in range(12)]
    results[5].strategy = "unknown"  # the list's check constraint refuses it
    outcomes = await _write_all(pool, writer, results)
    assert isinstance(outcomes[5], asyncpg.CheckViolationError)
    assert outcomes[:5] + outcomes[6:] == [None] * 11
    assert await pool.fetchval("SELECT count(*) FROM recommendation_list") == 11
    assert await pool.fetchval("SELECT count(*) FROM recommendation_item WHERE product_code = 'bond_fund'") == 11


async def test_requests_waiting_for_their_lists_hold_no_connection(pool):
    """With every connection of the pool taken by a request, the lists are still written: a request gives its
    connection back before it waits for its list's commit, so the writer gets one."""
    customer_id = await pool.fetchval("SELECT id FROM customer WHERE external_id = 'W1'")
    writer = ServedLists(pool.acquire)
    results = [served(customer_id, "bond_fund") for _ in range(12)]  # 12 requests on a pool of 4 connections
    assert await asyncio.wait_for(_write_all(pool, writer, results), 30) == [None] * 12
    assert await pool.fetchval("SELECT count(*) FROM recommendation_list") == 12


async def test_a_request_gone_before_its_commit_leaves_the_others_answered(pool):
    """A client that goes away while its list waits (its future cancelled): the list is still written, and the
    requests grouped with it get their answers."""
    customer_id = await pool.fetchval("SELECT id FROM customer WHERE external_id = 'W1'")
    writer = ServedLists(pool.acquire)
    gone, staying = served(customer_id, "bond_fund"), served(customer_id, "savings_account")
    writer.submit(gone, "mobile").cancel()
    assert await asyncio.wait_for(writer.submit(staying, "mobile"), 30) is None
    assert await pool.fetchval("SELECT count(*) FROM recommendation_list") == 2


def test_recommendation_ids_are_uuid7_in_time_order():
    """Served items' ids are UUID version 7: unique, and later ids sort after earlier ones (their index grows at
    its right edge)."""
    earlier = [time_ordered_uuid() for _ in range(1000)]
    time.sleep(0.002)
    later = time_ordered_uuid()
    assert {u.version for u in earlier} == {7} and {u.variant for u in earlier} == {uuid.RFC_4122}
    assert len(set(earlier)) == 1000 and later > max(earlier)
    assert abs((earlier[0].int >> 80) - time.time_ns() // 1_000_000) < 60_000  # its first 48 bits: Unix ms


async def test_stored_scores_propensities_and_reasons_are_those_served(pool):
    """What a list stores of each item: its score and propensity rounded half-even to 6 decimals as Python prints
    them (the propensity kept below 1), its reasons as served, in the list it was served in."""
    customer_id = await pool.fetchval("SELECT id FROM customer WHERE external_id = 'W1'")
    writer = ServedLists(pool.acquire)
    first, second = served(customer_id, "bond_fund", "savings_account"), served(customer_id, "savings_account")
    first.items[0].score, first.items[0].propensity = 1.2345675, 1.0
    first.items[1].score, first.items[1].propensity = 0.0000004, 0.1234565
    first.items[1].reasons = [{"code": "WIN_BACK", "text": "held until 2026-11-30 \u00e9", "value": "2026-11-30"}]
    second.items[0].score, second.items[0].propensity = 7.25, 0.5
    assert await _write_all(pool, writer, [first, second]) == [None, None]
    rows = {
        r["recommendation_id"]: r
        for r in await pool.fetch(
            "SELECT recommendation_id, list_id, score, propensity, reasons FROM recommendation_item"
        )
    }
    for result in (first, second):
        for rid, item in zip(result.recommendation_ids, result.items, strict=True):
            row = rows[rid]
            assert row["score"] == Decimal(f"{item.score:.6f}")
            assert row["propensity"] == Decimal(f"{min(item.propensity, 0.999999):.6f}")
            assert json.loads(row["reasons"]) == item.reasons
    assert [str(rows[rid]["score"]) for rid in first.recommendation_ids] == ["1.234568", "0.000000"]
    assert str(rows[first.recommendation_ids[0]]["propensity"]) == "0.999999"
    lists = {rows[rid]["list_id"] for rid in first.recommendation_ids}
    assert len(lists) == 1 and rows[second.recommendation_ids[0]]["list_id"] not in lists
    assert await pool.fetchval("SELECT count(*) FROM recommendation_list WHERE id = ANY($1::uuid[])", [*lists]) == 1


async def test_a_list_is_one_row_and_its_items_ids_carry_their_rank(pool):
    """One row a list, its items in arrays by rank; each item's id is the list's id with its rank in the low 4
    bits; a list with no item is stored too (what was served, and when)."""
    customer_id = await pool.fetchval("SELECT id FROM customer WHERE external_id = 'W1'")
    writer = ServedLists(pool.acquire)
    three, empty = served(customer_id, "bond_fund", "savings_account", "bond_fund"), served(customer_id)
    assert await _write_all(pool, writer, [three, empty]) == [None, None]
    rows = await pool.fetch(
        "SELECT id, product_codes, cardinality(scores), jsonb_array_length(reasons), legacy_ids "
        "FROM recommendation_list ORDER BY cardinality(product_codes) DESC"
    )
    assert [tuple(r)[1:] for r in rows] == [
        (["bond_fund", "savings_account", "bond_fund"], 3, 3, None),
        ([], 0, 0, None),
    ]
    assert three.recommendation_ids == [uuid.UUID(int=rows[0]["id"].int | rank) for rank in (1, 2, 3)]
    assert rows[0]["id"].int & 0xF == 0 and rows[0]["id"].version == 7 and empty.recommendation_ids == []
    with pytest.raises(ValueError):
        item_ids(rows[0]["id"], 16)
