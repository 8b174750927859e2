"""The customer's offer state (app/recommendations/offer_state.py): a recommendation read over a stored state
answers exactly as one that computes it; a write that changes what it reads, a catalog change, a changed risk
validity and the passing of time make it stale; a computation that read before a write never stores over it; and
the scheduled refresh computes stale states as a request would."""

import asyncio
import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.db import create_sessionmaker, server_settings
from app.core.migrations import upgrade_to_head
from app.customers.models import Customer
from app.recommendations import offer_state
from app.recommendations.catalog import build_snapshot
from app.rules.attributes import features_for_customers, features_stable_until
from tests.factories import inserting_customers
from tests.recommendations.conftest import CATALOG
from tests.recommendations.test_recommendations import make_customer, recommend

PRODUCTS = [code for code, *_ in CATALOG]


def _outcomes() -> tuple[float, float]:
    def count(outcome):
        return REGISTRY.get_sample_value("tierwise_offer_states_total", {"outcome": outcome}) or 0.0

    return count("read"), count("computed")


async def _state(session, external_id: str):
    """The customer's stored state, and whether it holds now (`holds`)."""
    return (
        (
            await session.execute(
                text(
                    "SELECT s.*, s.valid_until > now() AS holds FROM customer_offer_state s JOIN customer c "
                    "ON c.id = s.customer_id WHERE c.external_id = :e"
                ),
                {"e": external_id},
            )
        )
        .mappings()
        .one_or_none()
    )


def _without_ids(document: dict) -> dict:
    return {
        **document,
        "items": [{k: v for k, v in item.items() if k != "recommendation_id"} for item in document["items"]],
    }


async def test_a_stored_state_answers_exactly_as_a_computed_one(client, as_role, bank):
    rng = random.Random(5)
    for i in range(12):
        await make_customer(
            client,
            as_role,
            f"OS{i}",
            risk=rng.choice([None, 1, 3, 5]),
            assessed_days_ago=rng.choice([5, 400]),
            consent=rng.random() < 0.7,
            segment=rng.choice(["retail", "small_business"]),
            holdings=[(code, f"{rng.randint(1, 400000)}.00") for code in rng.sample(PRODUCTS[:7], rng.randint(0, 3))],
        )
        reads, computed = _outcomes()
        first = await recommend(client, as_role, f"OS{i}", explain="true")
        second = await recommend(client, as_role, f"OS{i}", explain="true")
        assert _outcomes() == (reads + 1, computed + 1)  # the first computed the state, the second read it
        assert _without_ids(second) == _without_ids(first)


async def test_the_state_holds_until_the_first_instant_a_feature_can_change(client, as_role, bank, session):
    # the risk assessment expires halfway to midnight: the earliest of the instants (tenure moves in ~20 days)
    now, midnight = (await session.execute(text("SELECT now(), (current_date + 1)::timestamptz"))).one()
    assessed = now - timedelta(days=365) + (midnight - now) / 2
    body = {
        "segment": "retail",
        "onboarded_at": (now - timedelta(days=3 * 365 + 10)).isoformat(),
        "risk_level": 4,
        "risk_assessed_at": assessed.isoformat(),
        "marketing_consent": True,
    }
    assert (await client.put("/v1/customers/VU1", json=body, headers=as_role("integration"))).status_code == 201
    await recommend(client, as_role, "VU1")
    state = await _state(session, "VU1")
    # each instant as Postgres computes it: the next midnight, the assessment's expiry, the next month of tenure
    midnight, expiry, next_month = (
        await session.execute(
            text(
                "SELECT (current_date + 1)::timestamptz, c.risk_assessed_at + make_interval(days => 365), "
                "c.onboarded_at + make_interval(months => (date_part('year', age(now(), c.onboarded_at)) * 12 "
                "+ date_part('month', age(now(), c.onboarded_at)))::int + 1) "
                "FROM customer c WHERE external_id = 'VU1'"
            )
        )
    ).one()
    assert state["valid_until"] == expiry < min(midnight, next_month) and state["holds"]
    # without an assessment, the next midnight: age, the day windows and the days since move with the date
    assert (
        await client.put(
            "/v1/customers/VU2",
            json={**body, "risk_level": None, "risk_assessed_at": None},
            headers=as_role("integration"),
        )
    ).status_code == 201
    await recommend(client, as_role, "VU2")
    assert (await _state(session, "VU2"))["valid_until"] == midnight
    assert state["risk_tolerance"] == 4 and state["risk_valid_days"] == 365

    # time passes: a state whose instant has passed is computed again
    await session.execute(
        text("UPDATE customer_offer_state SET valid_until = now() - interval '1 second' WHERE customer_id = :c"),
        {"c": state["customer_id"]},
    )
    await session.commit()
    reads, computed = _outcomes()
    await recommend(client, as_role, "VU1")
    assert _outcomes() == (reads, computed + 1)


async def test_the_next_month_of_tenure_is_never_later_than_the_features_see_it(session):
    """features_stable_until's month: for customers onboarded on every day of a year (month ends and leap days
    among them) and at several times of day, tenure_months as the features compute it does not change before
    it: not at now, not one microsecond before it."""
    await session.execute(
        text(
            inserting_customers(
                "INSERT INTO customer (external_id, segment, onboarded_at) "
                "SELECT 'TN' || n, 'retail', "
                "timestamptz '2019-12-01 00:00:00+00' + make_interval(days => n, hours => n % 24) "
                "FROM generate_series(0, 800) n"
            )
        )
    )
    customer = Customer.__table__
    features = features_for_customers(array([customer.c.id]), lateral=True)
    rows = (
        await session.execute(
            select(
                customer.c.onboarded_at,
                features.c.tenure_months,
                features_stable_until(customer, features).label("until"),
            )
            .select_from(customer.join(features, sa.true()))
            .where(customer.c.external_id.like("TN%"))
        )
    ).all()
    assert len(rows) == 801
    tenure = (
        "(date_part('year', age(CAST(:t AS timestamptz), CAST(:o AS timestamptz))) * 12 "
        "+ date_part('month', age(CAST(:t AS timestamptz), CAST(:o AS timestamptz))))::int"
    )
    for onboarded_at, months, until in rows:
        just_before = until - timedelta(microseconds=1)
        assert await session.scalar(text(f"SELECT {tenure}"), {"t": just_before, "o": onboarded_at}) == months, (
            onboarded_at,
            until,
        )


@pytest.mark.parametrize("write", ["holdings", "profile", "events", "survey", "complaint", "erasure"])
async def test_every_write_to_the_customer_makes_its_state_stale(client, as_role, bank, session, write):
    await make_customer(client, as_role, "WR1", risk=5, holdings=[("current_account", "1000.00")])
    before = await recommend(client, as_role, "WR1")
    stored = await _state(session, "WR1")
    assert stored["explanation"] is not None and stored["holds"]
    integration, now = as_role("integration"), datetime.now(UTC).isoformat()
    if write == "holdings":  # what it now holds is not offered
        response = await client.put(
            "/v1/customers/WR1/holdings",
            headers=integration,
            json={
                "holdings": [
                    {
                        "product_code": before["items"][0]["product"]["product_code"],
                        "balance": "10.00",
                        "as_of": now[:10],
                    }
                ]
            },
        )
    elif write == "profile":  # no marketing consent any more: no marketing offer
        response = await client.patch("/v1/customers/WR1", json={"marketing_consent": False}, headers=integration)
    elif write == "events":
        response = await client.post(
            "/v1/events",
            headers=integration,
            json={
                "events": [
                    {
                        "type": "transaction",
                        "event_id": "t1",
                        "customer_id": "WR1",
                        "occurred_at": now,
                        "amount": "10.00",
                        "direction": "debit",
                        "channel": "card",
                    }
                ]
            },
        )
    elif write == "survey":
        response = await client.post(
            "/v1/feedback/surveys",
            headers=as_role("app"),
            json={
                "event_id": "s1",
                "customer_id": "WR1",
                "kind": "nps",
                "score": 3,
                "channel": "mobile",
                "touchpoint": "app_rating_prompt",
                "occurred_at": now,
            },
        )
    elif write == "complaint":
        response = await client.post(
            "/v1/feedback/complaints",
            headers=as_role("app"),
            json={
                "event_id": "c1",
                "customer_id": "WR1",
                "category": "fees",
                "channel": "phone",
                "description": "fees",
            },
        )
    else:
        response = await client.delete("/v1/customers/WR1", headers=as_role("admin"))
    assert response.status_code in (200, 201, 204), response.text
    state = (
        (
            await session.execute(
                text("SELECT *, valid_until > now() AS holds FROM customer_offer_state WHERE customer_id = :c"),
                {"c": stored["customer_id"]},
            )
        )
        .mappings()
        .one()
    )
    assert state["generation"] == stored["generation"] + 1  # a computation that read before it stores nothing
    if write == "events":  # activity, which no condition of this catalog reads: the state still holds
        assert state["holds"] and state["explanation"] == stored["explanation"]
    else:  # nothing of the customer's stays in a stale state (erasure clears it like any write)
        assert (
            not state["holds"]
            and [
                state[c] for c in ("explanation", "held_products", "risk_tolerance", "marketing_consent", "ineligible")
            ]
            == [None] * 5
        )
        assert state["reads"] == stored["reads"]  # attribute names: it marks a customer who asks for offers
    if write == "erasure":
        return
    reads, computed = _outcomes()
    after = await recommend(client, as_role, "WR1")
    assert _outcomes() == ((reads + 1, computed) if write == "events" else (reads, computed + 1))
    if write == "holdings":
        offered_after = [i["product"]["product_code"] for i in after["items"]]
        assert before["items"][0]["product"]["product_code"] not in offered_after
    if write == "profile":
        assert [i["product"]["product_code"] for i in after["items"]] == ["maturity_notice"]  # a service message only


async def test_a_write_makes_stale_the_states_that_read_what_it_changed(client, as_role, bank, session):
    """The catalog's conditions decide what a state reads: once a product's condition reads the customer's
    transactions, a transaction makes the state stale, and the product's eligibility moves with it."""
    await session.execute(
        text("UPDATE product SET eligibility = CAST(:e AS jsonb) WHERE code = 'term_deposit'"),
        {"e": '{"attr": "txn_count_90d", "op": "gte", "value": 1}'},
    )
    await session.commit()
    await make_customer(client, as_role, "TX1", risk=5)
    first = await recommend(client, as_role, "TX1", explain="true")
    assert {
        "product_code": "term_deposit",
        "filter": "not_eligible",
        "detail": "eligibility condition not met",
    } in first["filtered_out"]
    assert "txn_count_90d" in (await _state(session, "TX1"))["reads"]
    response = await client.post(
        "/v1/events",
        headers=as_role("integration"),
        json={
            "events": [
                {
                    "type": "transaction",
                    "event_id": "t1",
                    "customer_id": "TX1",
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "amount": "10.00",
                    "direction": "debit",
                    "channel": "card",
                }
            ]
        },
    )
    assert response.status_code == 200, response.text
    assert not (await _state(session, "TX1"))["holds"]
    second = await recommend(client, as_role, "TX1", explain="true")
    assert "term_deposit" not in [f["product_code"] for f in second["filtered_out"]]
    assert {"code": "ELIGIBLE", "text": "txn_count_90d 1 >= 1"} in [
        {k: r[k] for k in ("code", "text")}
        for i in second["items"]
        if i["product"]["product_code"] == "term_deposit"
        for r in i["reasons"]
    ]


async def test_a_changed_risk_validity_makes_states_stale(client, as_role, bank, session):
    await make_customer(client, as_role, "RV1", risk=5, assessed_days_ago=200)
    assert "equity_fund" in [i["product"]["product_code"] for i in (await recommend(client, as_role, "RV1"))["items"]]
    await session.execute(text("SET tierwise.risk_valid_days = '180'"))  # as a restart with the setting changed
    codes = [i["product"]["product_code"] for i in (await recommend(client, as_role, "RV1"))["items"]]
    assert "equity_fund" not in codes and codes  # expired at 180 days: level-1 products only
    assert (await _state(session, "RV1"))["risk_valid_days"] == 180


@pytest.fixture
async def committed(scratch_database, test_settings):
    """A database of its own, where a recommendation and a write really commit on separate connections."""
    url = scratch_database()
    upgrade_to_head(url)
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=2, server_settings=server_settings(test_settings))
    await pool.execute(
        "INSERT INTO product (code, name, category, risk_level, channels) VALUES "
        "('bond_fund', 'Bond fund', 'fund', 2, '{mobile}')"
    )
    await pool.execute(
        inserting_customers(
            "INSERT INTO customer (external_id, segment, onboarded_at, risk_level, risk_assessed_at, "
            "marketing_consent) VALUES ('RC1', 'retail', now(), 3, now(), true)"
        )
    )
    yield url, pool
    await pool.close()


ARGUMENTS = {"primary_policy": "wealth", "channel": "mobile", "exclude": [], "winback_days": 365, "explain": False}


async def _computed(pool, snapshot, external_id: str):
    """The statement that computes the customer's state, stores it and gives the candidates."""
    return await pool.fetchrow(*snapshot.query(external_id, now=datetime.now(UTC), **ARGUMENTS))


async def _read(pool, snapshot, external_id: str):
    """The statement that reads the customer's state when one holds (else no row)."""
    return await pool.fetchrow(*snapshot.state_query(external_id, now=datetime.now(UTC), **ARGUMENTS))


async def _stored(pool, customer_id: int):
    return await pool.fetchrow(
        "SELECT *, valid_until > now() AS holds FROM customer_offer_state WHERE customer_id = $1", customer_id
    )


async def _waiting_on_a_lock(pool, task) -> None:
    """Until another backend of the database waits on a lock (pg_stat_activity), the task still pending."""
    for _ in range(500):
        assert not task.done(), "it finished instead of waiting"
        if await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ):
            assert not task.done()
            return
        await asyncio.sleep(0.01)
    raise AssertionError("nothing came to wait on a lock")


@pytest.mark.parametrize("write", ["marked_stale_and_uncommitted", "uncommitted_and_not_yet_marked"])
async def test_a_state_computed_before_a_write_commits_is_never_left_standing(committed, write):
    """A write to the customer's data marks its state stale before it commits (in the refresh every write calls).
    A recommendation computing the state meanwhile either waits for the writer's mark and then stores nothing, or
    stores before the mark, which then makes it stale: either way no state of the old data stands after the write."""
    url, pool = committed
    engine = create_async_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            snapshot = await build_snapshot(session)
        customer_id = await pool.fetchval("SELECT id FROM customer WHERE external_id = 'RC1'")
        async with create_sessionmaker(engine)() as writer:
            await writer.execute(
                text(
                    "INSERT INTO holding (customer_id, product_code, balance, as_of) "
                    "VALUES (:c, 'bond_fund', 100, current_date)"
                ),
                {"c": customer_id},
            )
            if write == "marked_stale_and_uncommitted":
                await offer_state.mark_stale(writer, [customer_id])
                recommendation = asyncio.create_task(_computed(pool, snapshot, "RC1"))
                await _waiting_on_a_lock(pool, recommendation)  # its store waits for the writer's row
                await writer.commit()
                row = await recommendation
            else:
                row = await _computed(pool, snapshot, "RC1")
                assert (await _stored(pool, customer_id))["holds"]  # stored from the data before the write
                await offer_state.mark_stale(writer, [customer_id])
                await writer.commit()
        assert row["held_products"] == []  # it read before the write committed
        state = await _stored(pool, customer_id)
        assert not state["holds"] and state["explanation"] is None and state["generation"] >= 1
        assert await _read(pool, snapshot, "RC1") is None
        # the next recommendation computes from the written data, and its state stands
        assert (await _computed(pool, snapshot, "RC1"))["held_products"] == ["bond_fund"]
        row = await _read(pool, snapshot, "RC1")
        assert row["held_products"] == ["bond_fund"] and row["explanation"] == "[]"
    finally:
        await engine.dispose()


async def test_an_instance_with_an_out_of_date_catalog_stores_no_state(committed):
    url, pool = committed
    engine = create_async_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            snapshot = await build_snapshot(session)
        await pool.execute(
            'UPDATE product SET eligibility = \'{"attr": "age", "op": "gte", "value": 18}\' WHERE code = \'bond_fund\''
        )  # another instance changed the catalog
        row = await _computed(pool, snapshot, "RC1")
        assert row["catalog_version"] != snapshot.version  # the caller compiles again
        customer_id = await pool.fetchval("SELECT id FROM customer WHERE external_id = 'RC1'")
        assert await _stored(pool, customer_id) is None
    finally:
        await engine.dispose()


STATE_COLUMNS = (
    "held_products",
    "risk_tolerance",
    "marketing_consent",
    "ineligible",
    "explanation",
    "reads",
    "valid_until",
    "catalog_version",
    "risk_valid_days",
)


async def test_stale_states_are_computed_again_in_bulk_as_a_request_computes_them(client, as_role, bank, app, session):
    rng = random.Random(9)
    for i in range(30):
        await make_customer(
            client,
            as_role,
            f"BK{i}",
            risk=rng.choice([None, 2, 5]),
            consent=rng.random() < 0.8,
            segment=rng.choice(["retail", "small_business"]),
            holdings=[(code, f"{rng.randint(1, 400000)}.00") for code in rng.sample(PRODUCTS[:7], rng.randint(0, 3))],
        )
    asked = [f"BK{i}" for i in range(20)]  # ten customers never ask for recommendations
    for external_id in asked:
        await recommend(client, as_role, external_id)
    computed = {e: {c: (await _state(session, e))[c] for c in STATE_COLUMNS} for e in asked}
    await session.execute(text("UPDATE customer_offer_state SET valid_until = now() - interval '1 second'"))
    await session.commit()  # as after midnight: no state holds

    assert await app.state.recommender.refresh_offer_states(chunk=7) == {"offer_states_stored": 20}
    for external_id in asked:  # the same state a request computed, and it holds again
        state = await _state(session, external_id)
        assert state["holds"] and {c: state[c] for c in STATE_COLUMNS} == computed[external_id]
    assert await _state(session, "BK25") is not None and not (await _state(session, "BK25"))["holds"]
    reads, computed_count = _outcomes()
    await recommend(client, as_role, "BK3")
    assert _outcomes() == (reads + 1, computed_count)

    assert await app.state.recommender.refresh_offer_states() == {"offer_states_stored": 0}  # all hold now
    assert await app.state.recommender.refresh_offer_states(everyone=True) == {"offer_states_stored": 10}
    assert (await _state(session, "BK25"))["holds"]


async def test_the_command_computes_every_customers_state(committed):
    url, pool = committed
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app.cli", "refresh-offer-states", "--everyone"],
        env={**os.environ, "TIERWISE_DATABASE_URL": dsn},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"offer_states_stored": 1}
    state = await pool.fetchrow("SELECT *, valid_until > now() AS holds FROM customer_offer_state")
    assert state["holds"] and state["held_products"] == [] and state["risk_tolerance"] == 3
