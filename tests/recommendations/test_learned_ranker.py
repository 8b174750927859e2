"""The learned ranker: deterministic training, calibrated propensities, the registry's one serving version and
rollback, and the commands through the `tierwise` entry point."""

import asyncio
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.db import create_sessionmaker, driver_connection
from app.core.migrations import upgrade_to_head
from app.recommendations.learned import registry
from app.recommendations.learned.features import feature_spec, fetch_rows
from app.recommendations.learned.model import PropensityModel
from app.recommendations.learned.models import RankerModel
from app.recommendations.learned.training import TrainingOptions, train_from_database
from tests.recommendations.ranker_history import load_history

UNTIL = date(2026, 5, 1)  # labels: adds in February .. May; May held out
TODAY = date(2026, 6, 28)


async def _train(session, seed: int = 7):
    conn = await driver_connection(session)
    spec = await feature_spec(conn, "wealth")
    options = TrainingOptions(until=UNTIL, months=4, seed=seed, learning_rate=0.2, rounds=40, chunk_customers=97)
    return spec, await train_from_database(conn, spec, options, TODAY)


async def test_training_is_deterministic_for_a_seed_and_learns_the_history(session):
    ids = await load_history(session)
    spec, first = await _train(session)
    _, again = await _train(session)
    _, other = await _train(session, seed=8)
    assert first.model.to_bytes() == again.model.to_bytes()
    assert first.model.to_bytes() != other.model.to_bytes()

    rows = await fetch_rows(await driver_connection(session), spec, [date(2026, 5, 1)], TODAY, customer_ids=ids)
    restored = PropensityModel.from_bytes(first.model.to_bytes())
    scores = restored.propensities(rows)
    assert np.array_equal(scores, first.model.propensities(rows), equal_nan=True)
    assert ((scores >= 0) & (scores <= 1) | np.isnan(scores)).all()
    assert (scores[rows.held()] == 0).all()
    assert first.window == (date(2026, 2, 1), UNTIL) and first.metrics["held_out_month"] == "2026-04-01"
    assert first.metrics["map7"] > 0.5 and "credit_card_gold" in first.model.classes
    # A card paused last month comes back: the model gives it to those who paused it, hardly to anyone else.
    card = spec.products.index("credit_card_gold")
    paused = ((rows.masks[:, card] >> 2) & 1 == 1) & ~rows.held()[:, card]
    never = rows.masks[:, card] == 0
    assert paused.sum() > 5 and never.sum() > 50
    assert scores[paused, card].mean() > 3 * scores[never, card].mean()


async def test_registry_keeps_one_serving_version_and_rolls_back(session):
    await load_history(session, customers=120)
    _, result = await _train(session)
    first = await registry.store_model(session, result, "test")
    second = await registry.store_model(session, result, "test")
    v1, v2 = first.version, second.version
    assert (await registry.serve_version(session, v1)).status == "serving"
    await registry.serve_version(session, v2)
    statuses = {row.version: row.status for row in await registry.list_models(session)}
    assert statuses == {v1: "retired", v2: "serving"}
    assert (await registry.serving_model(session))[0] == v2

    assert (await registry.rollback(session)).version == v1
    statuses = {row.version: row.status for row in await registry.list_models(session)}
    assert statuses == {v1: "serving", v2: "retired"}
    version, model = await registry.serving_model(session)
    assert version == v1 and model.to_bytes() == result.model.to_bytes()

    with pytest.raises(registry.RankerModelNotFound):
        await registry.serve_version(session, 999_999)
    with pytest.raises(IntegrityError):  # the database itself refuses a second serving version
        async with session.begin_nested():
            await session.execute(text("UPDATE ranker_model SET status = 'serving' WHERE version = :v"), {"v": v2})
    assert (await session.scalar(select(RankerModel.status).where(RankerModel.version == v2))) == "retired"


async def test_rollback_needs_an_earlier_served_version(session):
    await load_history(session, customers=120)
    _, result = await _train(session)
    row = await registry.store_model(session, result, "test")
    with pytest.raises(registry.NothingToRollBackTo):
        await registry.rollback(session)
    await registry.serve_version(session, row.version)
    with pytest.raises(registry.NothingToRollBackTo):
        await registry.rollback(session)


def _tierwise(url: str, *args: str) -> subprocess.CompletedProcess:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    return subprocess.run(
        [str(Path(sys.executable).parent / "tierwise"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TIERWISE_DATABASE_URL": dsn},
        timeout=300,
    )


async def test_commands_train_list_serve_and_roll_back(scratch_database):
    url = scratch_database()
    await asyncio.to_thread(upgrade_to_head, url)
    engine = create_async_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            await load_history(session, customers=150)
            await session.commit()
        trained = await asyncio.to_thread(
            _tierwise,
            url,
            "train-ranker",
            "--until",
            "2026-05",
            "--months",
            "4",
            "--seed",
            "3",
            "--chunk-customers",
            "100",
        )
        assert trained.returncode == 0, trained.stderr
        first = json.loads(trained.stdout)
        assert first["version"] == 1 and first["serving"] and first["window_until"] == "2026-05-01"
        second = await registry.retrain(
            create_sessionmaker(engine),
            "wealth",
            until=date(2026, 5, 1),
            months=4,
            seed=3,
            serve="never",
            chunk_customers=100,
        )
        assert second["version"] == 2 and second["serving"] is False and second["map7"] == first["map7"]

        listed = await asyncio.to_thread(_tierwise, url, "ranker-models", "list")
        assert [line.split("\t")[:2] for line in listed.stdout.splitlines()] == [["2", "candidate"], ["1", "serving"]]
        served = await asyncio.to_thread(_tierwise, url, "ranker-models", "serve", "2")
        assert served.returncode == 0 and served.stdout.strip() == "serving 2"
        rolled = await asyncio.to_thread(_tierwise, url, "ranker-models", "rollback")
        assert rolled.returncode == 0 and rolled.stdout.strip() == "serving 1"
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    text("SELECT version, status, model_sha256 FROM ranker_model ORDER BY version")
                )
            ).all()
        assert [(v, s) for v, s, _ in rows] == [(1, "serving"), (2, "retired")]
        assert rows[0][2] == rows[1][2]  # the same data and seed gave the same model bytes
    finally:
        await engine.dispose()


async def test_scheduled_retrain_trains_on_the_last_reported_months_and_serves(session, sessionmaker, test_settings):
    from app.recommendations.learned.scheduled import retrain_ranker

    await load_history(session, customers=150)
    await session.flush()
    done = await retrain_ranker(sessionmaker, test_settings.model_copy(update={"ranker_months": 5}))
    # the history ends in June 2026: June's adds are the held-out labels, whatever today's date
    assert done["serving"] and done["window_until"] == "2026-06-01" and done["window_from"] == "2026-02-01"
    assert (await registry.serving_model(session))[0] == done["version"]
    stored = await session.get(RankerModel, done["version"])
    assert stored.trained_by == "schedule" and stored.metrics["held_out_month"] == "2026-05-01"


async def test_a_scheduled_retrain_on_a_thin_history_stores_nothing_and_says_so(session, sessionmaker, test_settings):
    from app.recommendations.learned.scheduled import retrain_ranker

    await load_history(session, customers=3)  # a handful of customers: too few adds to learn a product from
    await session.flush()
    done = await retrain_ranker(sessionmaker, test_settings.model_copy(update={"ranker_months": 5}))
    assert done == {"version": None, "skipped": "too few products added in the training window to learn from"}
    assert await session.scalar(text("SELECT count(*) FROM ranker_model")) == 0


async def test_reason_contributions_follow_the_decision_paths_and_add_up_to_the_raw_score(session):
    ids = await load_history(session)
    spec, result = await _train(session)
    model = result.model
    rows = await fetch_rows(await driver_connection(session), spec, [date(2026, 5, 1)], TODAY, customer_ids=ids)
    matrix = model.matrix(rows)
    for rounds in (1, 5, None):
        contributions = model.contributions(matrix, rounds)
        assert contributions.shape == (len(rows), len(model.classes), len(spec.names()) + 1)
        raw = model.choice.predict(matrix, raw_score=True, num_iteration=rounds).reshape(contributions.shape[:2])
        assert np.allclose(contributions.sum(axis=2), raw)
        # a feature no tree of those rounds splits on contributes nothing
        used = {f for f, gain in enumerate(model.choice.feature_importance(iteration=rounds)) if gain}
        unused = [f for f in range(len(spec.names())) if f not in used]
        assert unused and not contributions[:, :, unused].any()
        assert np.abs(contributions[:, :, sorted(used)]).sum() > 0


def _main_s_reasons(model, matrix, rows, at, k, columns, rounds):
    """The reasons' features as the refresh found them before `top_contributions` (main at c17e4e7): every
    feature's path contribution summed, masked by the reasons true of the customer, argmax."""
    from app.recommendations.learned.serving import _true_of

    contributions = model.contributions(matrix, rounds, pairs=(at, k))[:, :-1]
    masked = np.where(_true_of(rows, matrix, at, columns[k]), contributions, -np.inf)
    top = masked.argmax(axis=1)
    return top, masked[np.arange(len(at)), top] > 0


async def test_the_top_contributions_and_the_stored_scores_are_main_s_to_the_bit(session, monkeypatch):
    # The refresh's reasons sum only the features a class's trees split on: the same feature and sign as summing
    # every feature (main's), for every pair, also with missing values, zeros and allowed masks at random; and a
    # chunk's scores (products, propensities, reasons) are main's exactly.
    from app.recommendations.learned import serving
    from app.recommendations.learned.serving import _score_chunk, _true_of

    ids = await load_history(session)
    _, result = await _train(session)
    model = result.model
    rows = await fetch_rows(await driver_connection(session), model.spec, [date(2026, 5, 1)], TODAY, customer_ids=ids)
    position = {code: i for i, code in enumerate(model.spec.products)}
    columns = np.array([position[c] for c in model.classes], dtype=np.intp)
    rng = np.random.default_rng(5)
    base = model.matrix(rows)
    damaged = base.copy()
    damaged[rng.random(base.shape) < 0.2] = np.nan
    damaged[rng.random(base.shape) < 0.1] = 0.0
    at, k = np.nonzero(np.ones((len(rows), len(model.classes)), dtype=bool))
    for matrix in (base, damaged):
        for rounds in (1, 5, serving.REASON_ROUNDS, None):
            true = _true_of(rows, matrix, at, columns[k])
            for allowed in (true, true & (rng.random(true.shape) < 0.5), np.ones_like(true)):
                top, positive = model.top_contributions(matrix, rounds, (at, k), allowed)
                contributions = model.contributions(matrix, rounds, pairs=(at, k))[:, :-1]
                masked = np.where(allowed, contributions, -np.inf)
                expected = masked.argmax(axis=1)
                expected_positive = masked[np.arange(len(at)), expected] > 0
                assert positive.any() and (positive == expected_positive).all()
                assert (top[positive] == expected[positive]).all()

    worth = (rng.random(len(model.classes)) + 0.5, rng.random(len(model.classes)) + 0.5)
    candidates = rng.random((len(rows), len(model.classes))) < 0.7
    ours = _score_chunk(model, rows, candidates, worth, serving.SHOWN_AT_MOST)
    monkeypatch.setattr(
        type(model),
        "top_contributions",
        lambda self, matrix, rounds, pairs, allowed: _main_s_reasons(
            self, matrix, rows.take(candidates.any(axis=1)), *pairs, columns, rounds
        ),
    )
    theirs = _score_chunk(model, rows, candidates, worth, serving.SHOWN_AT_MOST)
    assert sum(bool(r) for r in ours.reasons) > len(rows)
    for name in ("customer_ids", "products", "propensities", "reasons"):
        assert getattr(ours, name).tolist() == getattr(theirs, name).tolist(), name
