"""The learned ranker's features, computed in SQL, against a small case worked out by hand."""

from datetime import UTC, date, datetime

import numpy as np
from sqlalchemy import text

from app.core.db import driver_connection
from app.recommendations.learned import current
from app.recommendations.learned.current import fetch_current_rows
from app.recommendations.learned.features import (
    FeatureSpec,
    feature_matrix,
    feature_spec,
    fetch_rows,
    learn_vocabularies,
)
from tests.factories import add_products, inserting_customers, serve_list

SPEC = FeatureSpec(("current_account", "mortgage", "savings_account"), ("income",), ("entry_channel",), "wealth")


async def _customer(session, external_id: str, **attributes) -> int:
    return await session.scalar(
        text(
            inserting_customers(
                "INSERT INTO customer (external_id, segment, birth_date, onboarded_at, marketing_consent, attributes) "
                "VALUES (:e, 'retail', '1980-06-15', '2015-01-10T00:00:00Z', true, CAST(:a AS jsonb))"
            )
        ),
        {"e": external_id, "a": __import__("json").dumps(attributes)},
    )


async def _reports(session, customer_id: int, reports: dict[str, list[str]]) -> None:
    for day, products in reports.items():
        for product in products:
            await session.execute(
                text("INSERT INTO holding_balance (customer_id, product_code, as_of, balance) VALUES (:c, :p, :d, 1)"),
                {"c": customer_id, "p": product, "d": date.fromisoformat(day)},
            )


async def test_features_read_month_end_holdings_adds_drops_and_months_back(session):
    await add_products(session)
    alice = await _customer(session, "alice", income=52000, entry_channel="KAT")
    await _reports(
        session,
        alice,
        {
            "2026-01-31": ["current_account", "savings_account"],
            "2026-02-28": ["current_account", "savings_account", "mortgage"],
            "2026-03-10": ["current_account", "mortgage"],  # savings dropped in March, a report mid-month ...
            "2026-03-31": ["current_account"],  # ... and the month's last report: the mortgage is gone at March's end
            # no report in April: March's holdings carry over
            "2026-05-31": ["current_account", "savings_account"],  # savings back in May
        },
    )
    await session.execute(
        text(
            "INSERT INTO customer_activity_daily (customer_id, day, txn_count, txn_amount, logins) "
            "VALUES (:c, '2026-04-20', 3, 30, 2), (:c, '2026-02-10', 5, 50, 0)"
        ),
        {"c": alice},
    )
    conn = await driver_connection(session)
    rows = await fetch_rows(conn, SPEC, [date(2026, 3, 1), date(2026, 4, 1)], date(2026, 6, 15), customer_ids=[alice])
    assert list(rows.customer_ids) == [alice, alice] and rows.months == [date(2026, 3, 1), date(2026, 4, 1)]
    # masks: bit 0 the month after, bit 1 the month, bit k k-1 months before; products in SPEC order
    assert rows.masks[0].tolist() == [0b1111, 0b100, 0b1100]  # March: current always; mortgage Feb; savings Jan-Feb
    assert rows.masks[1].tolist() == [0b11111, 0b1000, 0b11001]  # April: savings back in May
    assert rows.held().tolist() == [[True, False, False], [True, False, False]]
    assert rows.labels().tolist() == [[False, False, False], [False, False, True]]

    x = feature_matrix(rows, learn_vocabularies(rows.categories, 3))
    names = SPEC.names()
    march, april = dict(zip(names, x[0].tolist(), strict=True)), dict(zip(names, x[1].tolist(), strict=True))
    assert (march["held:mortgage"], march["held_1m_ago:mortgage"], march["months_since_held:mortgage"]) == (0, 1, 1)
    assert (march["held_1m_ago:savings_account"], march["held_2m_ago:savings_account"]) == (1, 1)
    assert march["months_since_held:savings_account"] == 1
    assert (
        march["products_held"],
        march["products_held_1m_ago"],
        march["products_added"],
        march["products_dropped"],
    ) == (1, 3, 0, 2)
    assert (april["products_dropped"], april["months_since_held:savings_account"]) == (0, 2)
    assert (
        april["months_since_held:current_account"] == 0
        and np.isnan(march["months_since_held:current_account"]) is np.False_
    )
    assert (march["age"], march["tenure_months"]) == (45, 134)  # at March's end
    assert march["txn_count_30d"] == 0 and march["txn_count_90d"] == 5
    assert (april["txn_count_30d"], april["logins_30d"], april["txn_amount_30d"]) == (3, 2, 30)
    assert april["attribute:income"] == 52000 and april["attribute:entry_channel"] == 0  # "KAT": the first code
    assert np.isnan(april["tier"])  # no tier run under the policy
    assert await conn.fetchval("SELECT current_setting('enable_nestloop')") == "on"  # the caller's planner is back


async def _histories(session) -> dict[str, int]:
    """Customers with holdings reports mid-month, months without one, AUM-only days (an emptied set, and one beside
    a report), a report before the months the features see, one on their first and last days, one of products the
    features do not read (a report all the same), one only after April, none, and no attribute ("bare", last)."""
    await add_products(session)
    histories = {
        "gaps": {"2026-01-31": ["current_account", "savings_account"], "2026-03-10": ["mortgage"], "2026-03-31": []},
        "emptied": {"2026-02-28": ["savings_account"], "2026-04-15": ["current_account"]},
        "old": {"2025-06-30": ["mortgage"], "2026-04-30": ["savings_account", "mortgage"]},
        "edges": {"2025-11-01": ["mortgage", "savings_account"], "2026-04-30": ["current_account"]},
        "unread": {"2026-02-28": ["current_account"], "2026-03-31": ["equity_fund"]},  # a product the spec lacks
        "later": {"2026-05-31": ["current_account"]},
        "none": {},
    }
    ids = {}
    for name, reports in histories.items():
        ids[name] = await _customer(session, name, income=1000 + len(name), entry_channel=name)
        await _reports(session, ids[name], {day: held for day, held in reports.items() if held})
        for day, held in reports.items():
            if not held or name == "emptied":  # a day with only an AUM snapshot (and one beside holdings)
                await session.execute(
                    text("INSERT INTO customer_aum_daily (customer_id, day, aum) VALUES (:c, :d, 0)"),
                    {"c": ids[name], "d": date.fromisoformat(day)},
                )
    ids["bare"] = await _customer(session, "bare")  # no attribute: a missing number and a missing category
    await session.execute(
        text(
            "INSERT INTO customer_activity_daily (customer_id, day, txn_count, txn_amount, logins) "
            "VALUES (:c, :d, 4, 9, 1)"
        ),
        {"c": ids["gaps"], "d": date(2026, 4, 2)},
    )
    return ids


async def test_serving_s_statement_gives_training_s_features_of_its_month(session):
    """fetch_current_rows (the refresh's) against fetch_rows (training's) at one month: the same rows and features,
    the month after left out (`_histories`)."""
    ids = await _histories(session)
    conn = await driver_connection(session)
    assert not len(await fetch_current_rows(conn, SPEC, date(2026, 4, 1), date(2026, 6, 15), customer_ids=[]))
    for month, today in ((date(2026, 4, 1), date(2026, 6, 15)), (date(2026, 4, 1), date(2026, 4, 20))):
        ours = await fetch_current_rows(conn, SPEC, month, today, customer_ids=sorted(ids.values()))
        by_range = await fetch_current_rows(conn, SPEC, month, today, id_range=(min(ids.values()), max(ids.values())))
        theirs = await fetch_rows(conn, SPEC, [month], today, customer_ids=sorted(ids.values()))
        assert ours.customer_ids.tolist() == by_range.customer_ids.tolist() == theirs.customer_ids.tolist()
        assert ours.masks.tolist() == by_range.masks.tolist() == (theirs.masks & ~1).tolist()
        assert (theirs.masks & 1).any()  # "later" adds in May: the month after, which serving does not read
        assert ours.masks[list(ids).index("gaps")].tolist() == [0b11000, 0, 0b11000]  # emptied by March's end
        assert ours.masks[list(ids).index("emptied")].tolist() == [0b10, 0, 0b1100]
        assert ours.categories == theirs.categories and ours.months == theirs.months
        assert np.array_equal(ours.numbers, theirs.numbers, equal_nan=True)
        assert ours.numbers.dtype == theirs.numbers.dtype and not ours.accepted.any()
        assert np.isnan(ours.numbers[list(ids).index("bare"), -1]) and ours.categories[-1][-1] is None
        assert ours.numbers[list(ids).index("gaps"), 2:6].tolist() == [4, 9, 1, 4]  # April's activity, packed
        vocabularies = learn_vocabularies(theirs.categories, 3)
        assert np.array_equal(feature_matrix(ours, vocabularies), feature_matrix(theirs, vocabularies), equal_nan=True)
    assert await conn.fetchval("SELECT current_setting('enable_nestloop')") == "on"
    assert await conn.fetchval("SELECT current_setting('plan_cache_mode')") == "auto"  # the caller's planning is back


async def test_month_ends_as_packed_integers_are_the_arrays_ones(session, monkeypatch):
    """Serving's month-end holdings from the greatest bigint (day << products | products) equal those from the
    greatest (day, products) array, by id range and by ids, through the days furthest apart the features read
    (a report on the history's first day and on the month's last) and an AUM-only day beside a report."""
    ids = await _histories(session)
    conn = await driver_connection(session)
    month, today, chunk = date(2026, 4, 1), date(2026, 6, 15), sorted(ids.values())
    packed = await fetch_current_rows(conn, SPEC, month, today, customer_ids=chunk)
    packed_by_range = await fetch_current_rows(conn, SPEC, month, today, id_range=(chunk[0], chunk[-1]))
    monkeypatch.setattr(current, "PACKED_DAY_PRODUCTS_AT_MOST", len(SPEC.products) - 1)  # as with 56 products or more
    arrays = await fetch_current_rows(conn, SPEC, month, today, customer_ids=chunk)
    arrays_by_range = await fetch_current_rows(conn, SPEC, month, today, id_range=(chunk[0], chunk[-1]))
    assert current.packed_statement.cache_info().currsize == 4  # both forms, both chunk kinds
    assert packed.masks.tolist() == packed_by_range.masks.tolist() == arrays.masks.tolist()
    assert arrays.masks.tolist() == arrays_by_range.masks.tolist()
    assert packed.masks[list(ids).index("edges")].tolist() == [0b10, 0b1111100, 0b1111100]  # November-March, then April
    assert packed.masks[list(ids).index("unread")].tolist() == [0b1000, 0, 0]  # February's end only
    assert packed.customer_ids.tolist() == arrays.customer_ids.tolist() and packed.categories == arrays.categories
    assert np.array_equal(packed.numbers, arrays.numbers, equal_nan=True)


async def test_accepted_offers_label_the_month_after_and_sampling_keeps_every_labelled_row(session):
    await add_products(session)
    ids = [await _customer(session, f"c{i}") for i in range(40)]
    for customer_id in ids:
        await _reports(session, customer_id, {"2026-02-28": ["current_account"], "2026-03-31": ["current_account"]})
    [rid] = await serve_list(session, ids[7], ["mortgage"], channel="web", score="1")
    await session.execute(
        text(
            "INSERT INTO feedback_event (customer_id, event_id, recommendation_id, product_code, channel, strategy, "
            "kind, occurred_at) VALUES (:c, 'e1', :r, 'mortgage', 'web', 'personalised', 'accept', :at)"
        ),
        {"c": ids[7], "r": rid, "at": datetime(2026, 3, 12, tzinfo=UTC)},
    )
    conn = await driver_connection(session)
    every = await fetch_rows(conn, SPEC, [date(2026, 2, 1)], date(2026, 6, 1), id_range=(ids[0], ids[-1]))
    assert len(every) == 40 and every.labels().sum() == 1
    assert every.labels()[ids.index(ids[7])].tolist() == [False, True, False]
    sample = await fetch_rows(
        conn, SPEC, [date(2026, 2, 1)], date(2026, 6, 1), id_range=(ids[0], ids[-1]), keep_per_million=250_000, seed=3
    )
    again = await fetch_rows(
        conn, SPEC, [date(2026, 2, 1)], date(2026, 6, 1), customer_ids=ids, keep_per_million=250_000, seed=3
    )
    assert ids[7] in sample.customer_ids and 1 < len(sample) < 40
    assert sample.customer_ids.tolist() == again.customer_ids.tolist()


async def test_spec_reads_the_catalog_and_the_declared_attributes(session):
    await add_products(session)
    await session.execute(
        text(
            "INSERT INTO custom_attribute_definition (name, type) VALUES ('income', 'number'), "
            "('entry_channel', 'string'), ('vip', 'boolean'), ('tags', 'string_set')"
        )
    )
    spec = await feature_spec(await driver_connection(session), "wealth")
    assert spec.products[0] == "balanced_fund" and len(spec.products) == 9
    assert spec.numeric_attributes == ("income", "vip") and spec.string_attributes == ("entry_channel",)
