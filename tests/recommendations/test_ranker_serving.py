"""The learned ranker served from the offer state: the serving model's calibrated propensities are computed in bulk
when states are refreshed and stored with them; a request reads them (no model runs), falls back to the rule-based
propensity for a product the model does not know and when no model serves, and explores by Thompson sampling."""

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from app.recommendations.learned import registry, serving
from app.recommendations.reason_texts import reason_text
from tests.recommendations.ranker_history import load_history
from tests.recommendations.test_learned_ranker import _train

CUSTOMERS = [f"R{i}" for i in range(0, 120, 4)]


async def _get(client, as_role, external_id, **params):
    response = await client.get(
        f"/v1/customers/{external_id}/recommendations",
        params={"limit": 10, "explore": "false", **params},
        headers=as_role("app"),
    )
    assert response.status_code == 200, response.text
    return response.json()


def _propensities(document) -> dict[str, float]:
    return {item["product"]["product_code"]: item["score_parts"]["propensity"] for item in document["items"]}


def _order(document) -> list[str]:
    return [item["product"]["product_code"] for item in document["items"]]


async def _stored(session) -> dict[str, dict]:
    rows = (
        await session.execute(
            text(
                "SELECT c.external_id, s.ranker_version, s.ranker_products, s.ranker_propensities, s.ranker_reasons "
                "FROM customer_offer_state s JOIN customer c ON c.id = s.customer_id"
            )
        )
    ).all()
    return {
        r[0]: {"version": r[1], "scores": dict(zip(r[2] or (), r[3] or (), strict=True)), "reasons": r[4]} for r in rows
    }


async def _serving(session, app, after_training=None):
    """The history, a small model trained on it and served, and every customer's offer state refreshed."""
    await load_history(session, customers=300)
    _, result = await _train(session)
    if after_training is not None:
        await after_training()
    row = await registry.store_model(session, result, "test")
    await session.commit()
    rule_based = {e: await _get(app.client, app.as_role, e) for e in CUSTOMERS}  # no model serves yet
    await registry.serve_version(session, row.version)
    await session.commit()
    counts = await app.state.recommender.refresh_offer_states(everyone=True)
    return row.version, result.model, rule_based, counts


class _App:
    def __init__(self, app, client, as_role):
        self.state, self.client, self.as_role = app.state, client, as_role


async def test_recommendations_follow_the_stored_model_propensities(client, as_role, app, session):
    version, model, rule_based, counts = await _serving(session, _App(app, client, as_role))
    assert counts["offer_states_scored"] >= len(CUSTOMERS)
    stored = await _stored(session)
    assert all(stored[e]["version"] == version for e in CUSTOMERS)
    known = set(model.classes)
    assert "credit_card_gold" in known and "term_deposit_12m" not in known  # never added in the history: new
    differs = scaled = 0
    for external_id in CUSTOMERS:
        document = await _get(client, as_role, external_id)
        scores = stored[external_id]["scores"]
        propensities = _propensities(document)
        rules = _propensities(rule_based[external_id])
        cold = sorted((rules[code], p) for code, p in propensities.items() if code not in known and code in rules)
        for code, propensity in propensities.items():
            if code in known:  # the model's calibrated propensity, as stored with the state
                assert propensity == round(scores[code], 6), (external_id, code)
        # cold start: the rule-based propensity as when no model served, times one scale per customer (the model's
        # over the rules' propensities of the products the model knows), which puts it on the model's scale
        if cold:
            rule, model_scaled = cold[-1]
            scale = model_scaled / rule
            assert all(abs(p - r * scale) <= 2e-6 for r, p in cold), (external_id, cold)
            scaled += scale < 0.5
        assert [i["score"] for i in document["items"]] == sorted((i["score"] for i in document["items"]), reverse=True)
        differs += _order(document) != _order(rule_based[external_id])
    assert differs > 0 and scaled > 0

    # The request reads the stored scores and runs no model: reversed stored scores reverse the learned order.
    await session.execute(
        text(
            "UPDATE customer_offer_state "
            "SET ranker_propensities = ARRAY(SELECT 1 - p FROM unnest(ranker_propensities) p)"
        )
    )
    await session.commit()
    for external_id in CUSTOMERS[:8]:
        propensities = _propensities(await _get(client, as_role, external_id))
        scores = stored[external_id]["scores"]
        for code in propensities.keys() & known:
            assert propensities[code] == round(1 - scores[code], 6)


async def test_no_model_serving_ranks_by_the_rule_based_propensity(client, as_role, app, session):
    version, _, rule_based, _ = await _serving(session, _App(app, client, as_role))
    await session.execute(text("UPDATE ranker_model SET status = 'retired' WHERE version = :v"), {"v": version})
    await session.commit()
    app.state.recommender.invalidate_stats()
    assert "offer_states_scored" not in await app.state.recommender.refresh_offer_states(everyone=True)
    for external_id in CUSTOMERS:  # the stored scores of a version no longer serving are not read
        document = await _get(client, as_role, external_id)
        assert _propensities(document) == _propensities(rule_based[external_id])
        assert _order(document) == _order(rule_based[external_id])


async def test_a_write_clears_the_scores_and_a_refresh_scores_the_state_again(client, as_role, app, session):
    version, _, _, _ = await _serving(session, _App(app, client, as_role))
    await session.execute(
        text(
            "UPDATE customer_offer_state SET valid_until = now() - interval '1 second' WHERE customer_id = "
            "(SELECT id FROM customer WHERE external_id = 'R4')"
        )
    )
    await session.commit()
    await _get(client, as_role, "R4")  # the request computes the state again: no scores until the next refresh
    assert (await _stored(session))["R4"]["version"] is None
    counts = await app.state.recommender.refresh_offer_states()
    assert counts == {"offer_states_stored": 0, "offer_states_scored": 1}
    assert (await _stored(session))["R4"]["version"] == version


async def test_exploration_samples_around_the_calibrated_propensity(client, as_role, app, session):
    await _serving(session, _App(app, client, as_role))
    stored = await _stored(session)
    customer = max(CUSTOMERS, key=lambda e: stored[e]["scores"].get("credit_card_gold", 0.0))
    fixed = [await _get(client, as_role, customer) for _ in range(5)]
    assert all(_propensities(d) == _propensities(fixed[0]) and _order(d) == _order(fixed[0]) for d in fixed)
    mean = _propensities(fixed[0])["credit_card_gold"]
    assert mean == round(stored[customer]["scores"]["credit_card_gold"], 6) and mean > 0.02
    explored = [_propensities(await _get(client, as_role, customer, explore="true")) for _ in range(20)]
    card = [p["credit_card_gold"] for p in explored]
    assert len(set(card)) == 20  # drawn, not the mean
    assert min(card) < mean < max(card)
    assert len({tuple(sorted(p, key=p.get)) for p in explored}) > 1  # and so does the order


async def test_model_reasons_name_the_top_feature_of_the_decision_in_words(client, as_role, app, session):
    dropped = {}

    async def drop_cards_last_month():  # card holders who gave their card up this month, after training
        rows = await session.execute(
            text(
                "DELETE FROM holding_balance b USING customer c WHERE c.id = b.customer_id "
                "AND b.product_code = 'credit_card_gold' AND b.as_of = '2026-06-28' "
                "AND c.external_id = ANY(:ids) RETURNING c.external_id"
            ),
            {"ids": CUSTOMERS[:16]},
        )
        dropped.update({r[0]: True for r in rows})

    await _serving(session, _App(app, client, as_role), drop_cards_last_month)
    assert len(dropped) >= 3
    stored = await _stored(session)
    for external_id in dropped:
        card = next(
            i
            for i in (await _get(client, as_role, external_id))["items"]
            if i["product"]["product_code"] == "credit_card_gold"
        )
        reason = card["reasons"][0]
        assert reason["code"] == "MODEL_PROPENSITY"
        assert reason["value"]["factor"] == "RANKER_HELD_LAST_MONTH", reason
        assert reason["text"] == "you had Credit Card Gold until last month"
        assert reason["value"]["propensity"] == round(stored[external_id]["scores"]["credit_card_gold"], 6)
        response = await client.get(
            f"/v1/customers/{external_id}/recommendations",
            params={"limit": 10, "explore": "false"},
            headers={**as_role("app"), "Accept-Language": "zh-CN"},
        )
        card_zh = next(i for i in response.json()["items"] if i["product"]["product_code"] == "credit_card_gold")
        assert card_zh["reasons"][0]["text"] == "您上个月之前一直持有Credit Card Gold"
    # Every model-ranked item explains itself by the factor stored with the state, in words.
    for external_id in CUSTOMERS:
        codes = dict(zip(*(await _reasons_stored(session, external_id)), strict=True))
        for item in (await _get(client, as_role, external_id))["items"]:
            code = item["product"]["product_code"]
            if codes.get(code):
                first = item["reasons"][0]
                factor, _, related = codes[code].partition(":")
                assert first["code"] == "MODEL_PROPENSITY" and first["value"]["factor"] == factor
                assert first["value"]["related_product_code"] == (related or None)
                assert first["text"] == reason_text(
                    factor, "en", "en", product=item["product"]["name"], related=related.replace("_", " ").title()
                )
            else:
                assert all(r["code"] != "MODEL_PROPENSITY" for r in item["reasons"])


async def _reasons_stored(session, external_id):
    row = (
        await session.execute(
            text(
                "SELECT s.ranker_products, s.ranker_reasons FROM customer_offer_state s "
                "JOIN customer c ON c.id = s.customer_id WHERE c.external_id = :e"
            ),
            {"e": external_id},
        )
    ).one()
    return row[0] or [], row[1] or []


async def test_a_refresh_in_many_chunks_scores_each_chunk_as_one_chunk_does(client, as_role, app, session):
    # The refresh scores each chunk's states while it computes the next chunk's (one chunk behind), then sweeps up
    # holding states it has not scored: the same scores and reasons as scoring every state at once.
    version, _, _, counts = await _serving(session, _App(app, client, as_role))
    whole = await _stored(session)
    assert counts["offer_states_scored"] == len(whole)  # the states the refresh stored, and those that held
    await session.execute(
        text(
            "UPDATE customer_offer_state SET valid_until = '-infinity', ranker_version = NULL, ranker_products = NULL,"
            " ranker_propensities = NULL, ranker_reasons = NULL"
        )
    )
    await session.commit()
    counts = await app.state.recommender.refresh_offer_states(everyone=True, chunk=7)
    assert counts == {"offer_states_stored": len(whole), "offer_states_scored": len(whole)}
    chunked = await _stored(session)
    assert chunked == whole and all(state["version"] == version for state in chunked.values())
    assert sum(bool(state["scores"]) for state in chunked.values()) >= len(CUSTOMERS)

    # a holding state that lost its scores (not in any refreshed chunk) is scored by the sweep after the chunks
    await session.execute(
        text(
            "UPDATE customer_offer_state SET ranker_version = NULL, ranker_products = NULL, "
            "ranker_propensities = NULL, ranker_reasons = NULL "
            "WHERE customer_id = (SELECT id FROM customer WHERE external_id = 'R8')"
        )
    )
    await session.commit()
    assert await app.state.recommender.refresh_offer_states(chunk=7) == {
        "offer_states_stored": 0,
        "offer_states_scored": 1,
    }
    assert await _stored(session) == whole


async def test_scoring_only_the_candidates_serves_what_scoring_every_product_serves(
    client, as_role, app, session, monkeypatch
):
    # The refresh predicts only for the customers with a candidate the state knows of (not held, eligible,
    # suitable, consented), stores only the candidates' scores, and computes reasons only for the candidates that
    # can be shown (SHOWN_AT_MOST of the highest score): the lists served are those of scoring every product of
    # every customer with every reason.
    await _serving(session, _App(app, client, as_role))
    unconsented = CUSTOMERS[:5]  # no marketing consent: no candidate but services, none of which the model knows
    await session.execute(
        text("UPDATE customer SET marketing_consent = false WHERE external_id = ANY(:ids)"), {"ids": unconsented}
    )
    await session.commit()

    async def refresh_and_serve():
        await session.execute(text("UPDATE customer_offer_state SET valid_until = '-infinity'"))
        await session.commit()
        await app.state.recommender.refresh_offer_states(everyone=True)
        lists = {}
        for external_id in CUSTOMERS:
            for limit in (1, 10):
                document = await _get(client, as_role, external_id, limit=limit)
                for item in document["items"]:
                    del item["recommendation_id"]
                lists[external_id, limit] = document
        return await _stored(session), lists

    monkeypatch.setattr(serving, "SHOWN_AT_MOST", 1)  # reasons for the first item only: lists of one show them all
    lean, lean_lists = await refresh_and_serve()
    monkeypatch.setattr(serving, "_score_states", lambda scorer, states, rows: serving._score_chunk(scorer.model, rows))
    full, full_lists = await refresh_and_serve()

    assert sum(bool(full_lists[e, 1]["items"]) for e in CUSTOMERS) > len(CUSTOMERS) // 2
    for external_id in CUSTOMERS:
        assert lean_lists[external_id, 1] == full_lists[external_id, 1], external_id  # scores and reasons
        lean_items, full_items = lean_lists[external_id, 10]["items"], full_lists[external_id, 10]["items"]
        assert [(i["product"], i["score"], i["score_parts"]) for i in lean_items] == [
            (i["product"], i["score"], i["score_parts"]) for i in full_items
        ], external_id
    # the same scores for the candidates; none for the customers without one, reasons only for the first
    assert all(full[e]["scores"][code] == p for e in lean for code, p in lean[e]["scores"].items())
    assert all(not lean[e]["scores"] and full[e]["scores"] for e in unconsented)
    assert all(sum(bool(why) for why in state["reasons"] or ()) <= 1 for state in lean.values())
    assert sum(bool(why) for state in lean.values() for why in state["reasons"] or ()) < sum(
        bool(why) for state in full.values() for why in state["reasons"] or ()
    )


async def test_a_write_after_a_chunk_s_features_were_read_leaves_its_state_to_the_sweep(
    client, as_role, app, session, monkeypatch
):
    # A chunk's features are read before its states are computed (on another connection, at the same time), and its
    # scores stored at the generations read before them: a customer written meanwhile is not stored with features
    # from before the write; the sweep after the chunks scores the state with the features after it.
    from app.recommendations import offer_state

    await _serving(session, _App(app, client, as_role))
    before = await _stored(session)
    written = (await session.execute(text("SELECT id FROM customer WHERE external_id = 'R8'"))).scalar_one()
    read_features = serving.prefetch

    async def features_then_a_write(scorer, sessionmaker, ids):
        found = await read_features(scorer, sessionmaker, ids)
        if written in ids:  # the customer's last report loses its holdings, and the write marks the state stale
            async with sessionmaker() as other:
                await other.execute(
                    text(
                        "DELETE FROM holding_balance WHERE customer_id = :id "
                        "AND as_of = (SELECT max(as_of) FROM holding_balance WHERE customer_id = :id)"
                    ),
                    {"id": written},
                )
                await offer_state.mark_stale(other, [written])
                await other.commit()
        return found

    monkeypatch.setattr(serving, "prefetch", features_then_a_write)
    await session.execute(text("UPDATE customer_offer_state SET valid_until = '-infinity'"))
    await session.commit()
    await app.state.recommender.refresh_offer_states(everyone=True, chunk=7)
    refreshed = await _stored(session)

    await session.execute(  # R8 scored anew from what the database holds now
        text(
            "UPDATE customer_offer_state SET ranker_version = NULL, ranker_products = NULL, "
            "ranker_propensities = NULL, ranker_reasons = NULL WHERE customer_id = :id"
        ),
        {"id": written},
    )
    await session.commit()
    assert await app.state.recommender.refresh_offer_states(chunk=7) == {
        "offer_states_stored": 0,
        "offer_states_scored": 1,
    }
    again = await _stored(session)
    assert refreshed["R8"] == again["R8"] and refreshed["R8"]["scores"] != before["R8"]["scores"]
    assert {e: s for e, s in refreshed.items() if e != "R8"} == {e: s for e, s in before.items() if e != "R8"}


async def test_a_chunk_s_generations_are_read_by_range_and_by_ids_alike(client, as_role, app, session):
    # prefetch reads a chunk's state generations as two arrays: by id range when the ids are dense (a refresh's
    # chunk), by ids otherwise; a customer without a state is at generation 0.
    from app.core.db import driver_connection
    from app.recommendations import offer_state

    await _serving(session, _App(app, client, as_role))
    ids = list((await session.execute(text("SELECT id FROM customer ORDER BY id LIMIT 40"))).scalars())
    await offer_state.mark_stale(session, ids[3:5])  # two generations moved on
    await session.execute(text("DELETE FROM customer_offer_state WHERE customer_id = :id"), {"id": ids[7]})
    await session.commit()
    expected = dict((await session.execute(text("SELECT customer_id, generation FROM customer_offer_state"))).all())
    conn = await driver_connection(session)
    by_range = await conn.fetchrow(serving._GENERATIONS_BY_RANGE, ids[0], ids[-1])
    by_ids = await conn.fetchrow(serving._GENERATIONS_BY_IDS, ids[::3])
    wanted = [*ids, -1, ids[-1] + 10**9]  # and two customers the read did not find
    for found in (by_range, by_ids):
        generations = serving.Generations(np.array(found["ids"]), np.array(found["generations"]))
        assert generations.of(wanted) == [expected.get(i, 0) if i in found["ids"] else 0 for i in wanted]
    assert serving.Generations(np.array(by_range["ids"]), np.array(by_range["generations"])).of(ids) == [
        expected.get(i, 0) for i in ids
    ]
    assert expected[ids[3]] == expected[ids[4]] == expected[ids[0]] + 1 and ids[7] not in expected
    empty = await conn.fetchrow(serving._GENERATIONS_BY_IDS, [])
    assert serving.Generations(np.array(empty["ids"]), np.array(empty["generations"])).of(ids[:2]) == [0, 0]


def test_a_cold_start_product_is_put_on_the_model_scale():
    """The rules' propensity (a chance of holding) beside the model's (a chance of adding next month): each
    cold-start product is scaled by the customer's ratio of the model's to the rules' propensities over the products
    the model knows, so that a product no one added in the training window does not top every list."""
    from app.recommendations.ranking import Ranked, _cold_start_on_the_model_scale

    def item(code, propensity, model=None, value=2.0):
        evidence = {} if model is None else {"model": model}
        return Ranked(SimpleNamespace(code=code), propensity * value, propensity, value, 1.0, evidence)

    rules = {"card": 0.30, "fund": 0.10, "new": 0.20}
    ranked = [item("card", 0.006, model=0.006), item("fund", 0.002, model=0.002), item("new", rules["new"])]
    _cold_start_on_the_model_scale(ranked, lambda i: rules[i.product.code])
    new = ranked[2]
    assert new.propensity == pytest.approx(0.20 * 0.008 / 0.40) and new.score == pytest.approx(new.propensity * 2.0)
    assert new.evidence["model_scale"] == pytest.approx(0.02)
    assert sorted(ranked, key=lambda r: -r.score)[0].product.code == "card"  # was "new", 33 times the card's score
    assert [r.propensity for r in ranked[:2]] == [0.006, 0.002]  # the model's own are as stored

    for alone in ([item("card", 0.006, model=0.006)], [item("new", 0.2)]):  # all known, or none: unchanged
        before = [(r.score, r.propensity) for r in alone]
        _cold_start_on_the_model_scale(alone, lambda i: rules[i.product.code])
        assert [(r.score, r.propensity) for r in alone] == before


async def test_the_scores_literals_read_back_as_the_same_codes_and_floats(session):
    import numpy as np

    from app.core.db import driver_connection

    floats = [0.1 + 0.2, 1 / 3, 5e-324, 1e-300, 0.999999999999999, 2.5e-05]
    codes = ["a", 'q"uote', "back\\slash", "com,ma", "{brace}", "", "NULL"]
    found = serving.Scored(
        np.array([7] * 3 + [9] * 3),
        np.array(codes[:6], dtype=object),
        np.array(floats),
        np.array(codes[1:], dtype=object),
    )
    states = [{"customer_id": 5}, {"customer_id": 7}, {"customer_id": 9}]
    products, propensities, reasons = serving._literals(states, found)
    conn = await driver_connection(session)
    read = [
        await conn.fetchrow("SELECT $1::text::text[] AS p, $2::text::float8[] AS f, $3::text::text[] AS r", *row)
        for row in zip(products, propensities, reasons, strict=True)
    ]
    assert [(r["p"], r["f"], r["r"]) for r in read] == [
        ([], [], []),
        (codes[:3], floats[:3], codes[1:4]),
        (codes[3:6], floats[3:], codes[4:]),
    ]
    # 17 significant digits read back as the same float8, whatever the double (propensities, and any bits)
    any_bits = np.frombuffer(np.random.default_rng(8).bytes(4000), dtype=np.float64)
    many = np.concatenate([np.random.default_rng(7).random(500) ** 3, any_bits[np.isfinite(any_bits)]])
    names = np.array(["a"] * len(many), dtype=object)
    found = serving.Scored(np.zeros(len(many), dtype=np.int64), names, many, names)
    _, [literal], _ = serving._literals([{"customer_id": 0}], found)
    assert await conn.fetchval("SELECT $1::text::float8[]", literal) == many.tolist()


async def test_on_the_engine_s_connections_a_chunk_s_scores_are_stored_beside_the_next_chunk(
    scratch_database, test_settings, monkeypatch
):
    # The service's sessionmaker opens a connection a session: a chunk's scores are stored on a connection of their
    # own while the refresh goes on to the next chunk (at most one store in flight, none left when it returns, so
    # the sweep after the chunks finds only what no chunk scored); what is stored is what a refresh on one
    # connection, statement after statement, stores.
    from app.core.db import create_sessionmaker, server_settings
    from app.core.migrations import upgrade_to_head
    from app.main import create_app
    from app.recommendations import offer_state

    url = scratch_database()
    await asyncio.to_thread(upgrade_to_head, url)
    engine = create_async_engine(url, pool_size=5, connect_args={"server_settings": server_settings(test_settings)})
    try:
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session:
            await load_history(session, customers=300)
            _, result = await _train(session)
            row = await registry.store_model(session, result, "test")
            await registry.serve_version(session, row.version)
            await session.commit()

        in_flight, seen, store, not_holding = 0, [], serving._store, offer_state.not_holding

        def counted(*args):  # in flight from the call on (a store the refresh leaves to a task of its own)
            nonlocal in_flight
            in_flight += 1

            async def storing():
                nonlocal in_flight
                try:
                    return await store(*args)
                finally:
                    in_flight -= 1

            return storing()

        async def noted(*args, **kwargs):  # a chunk's first statement: is the chunk before it being stored?
            seen.append(in_flight)
            return await not_holding(*args, **kwargs)

        monkeypatch.setattr(serving, "_store", counted)
        monkeypatch.setattr(offer_state, "not_holding", noted)

        async def refresh(sessionmaker):
            counts = await create_app(test_settings, sessionmaker=sessionmaker).state.recommender.refresh_offer_states(
                everyone=True, chunk=7
            )
            assert in_flight == 0
            async with sessionmaker() as session:
                stored = await _stored(session)
                await session.execute(
                    text(
                        "UPDATE customer_offer_state SET valid_until = '-infinity', ranker_version = NULL, "
                        "ranker_products = NULL, ranker_propensities = NULL, ranker_reasons = NULL"
                    )
                )
                await session.commit()
            return counts, stored

        beside, stored_beside = await refresh(sessionmaker)
        assert max(seen) == 1 and seen.count(1) > 10  # stores ran beside the next chunks, one at a time
        seen.clear()
        async with engine.connect() as conn:
            in_turn, stored_in_turn = await refresh(async_sessionmaker(bind=conn, expire_on_commit=False))
        assert max(seen) == 0
        assert beside == in_turn == {"offer_states_stored": 300, "offer_states_scored": 300}
        assert stored_beside == stored_in_turn
        assert sum(bool(state["scores"]) for state in stored_beside.values()) > 200
        assert all(state["version"] == row.version for state in stored_beside.values())
    finally:
        await engine.dispose()
