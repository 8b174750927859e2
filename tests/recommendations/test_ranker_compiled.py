"""The serving model's boosters compiled to native code (app/recommendations/learned/compiled.py): the same
predictions as LightGBM's (missing values and categories included), compiled once and loaded from the cache by a
later process, and a refresh of offer states with the compiled predictor stores the scores LightGBM gives."""

from datetime import date

import lightgbm
import numpy as np
import pytest
from sqlalchemy import text

from app.core.db import driver_connection
from app.recommendations.learned import compiled, registry
from app.recommendations.learned.features import fetch_rows
from app.recommendations.learned.model import PropensityModel
from tests.recommendations.test_learned_ranker import TODAY
from tests.recommendations.test_ranker_serving import CUSTOMERS, _App, _serving, _stored

pytestmark = pytest.mark.skipif(compiled.cache_key("") is None, reason="lleaves or LLVM not available here")


def _booster(seed: int = 3) -> tuple[lightgbm.Booster, np.ndarray]:
    """A small multiclass booster over numbers with missing values and one categorical column."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, 5))
    x[:, 4] = rng.integers(0, 6, size=600)
    label = ((x[:, 0] > 0).astype(int) + (x[:, 4] >= 3)).astype(int)
    x[rng.random(x.shape) < 0.1] = np.nan
    data = lightgbm.Dataset(x, label, categorical_feature=[4], params={"verbose": -1})
    params = {"objective": "multiclass", "num_class": 3, "num_leaves": 7, "verbose": -1, "seed": seed}
    return lightgbm.train(params, data, num_boost_round=15), x


def test_the_compiled_booster_predicts_what_lightgbm_does_and_is_cached(tmp_path):
    booster, x = _booster()
    text = booster.model_to_string()
    assert compiled.predictor(text, tmp_path) is None  # not compiled here yet: LightGBM predicts
    predict = compiled.predictor(text, tmp_path, compile_missing=True)
    expected = booster.predict(x)
    assert expected.shape == (len(x), 3)
    for threads in (1, 2):
        np.testing.assert_allclose(predict(x, threads), expected, rtol=1e-12, atol=1e-15)
    assert len(list(tmp_path.glob("*.o"))) == 1

    compiled._ready.clear()  # as a later process: loaded from the cache, not compiled
    loaded = compiled.predictor(text, tmp_path)
    np.testing.assert_allclose(loaded(x.astype(np.float32), 0), booster.predict(x.astype(np.float32)), rtol=1e-12)

    other, _ = _booster(seed=4)  # another model: another key, not found
    assert compiled.predictor(other.model_to_string(), tmp_path) is None
    cached = next(tmp_path.glob("*.o"))
    cached.write_bytes(cached.read_bytes()[:-100])  # damaged (LLVM would abort on it): dropped, not loaded
    compiled._ready.clear()
    assert compiled.predictor(text, tmp_path) is None and not cached.exists()
    np.testing.assert_allclose(compiled.predictor(text, tmp_path, compile_missing=True)(x, 1), expected, rtol=1e-12)
    assert cached.exists()


def test_the_compiled_leaves_are_lightgbm_s_pred_leaf(tmp_path):
    # The reasons' leaves: the booster's first rounds' trees compiled as one class each, leaf values their
    # indices; the leaves LightGBM's pred_leaf gives, missing values and categories included.
    booster, x = _booster()
    x[::7, 4] = 9  # a category no split has seen
    for rounds in (1, 5, None):
        text = compiled.leaf_model_text(booster.model_to_string(num_iteration=rounds))
        predict = compiled.predictor(text, tmp_path, compile_missing=True, raw_score=True)
        expected = booster.predict(x, pred_leaf=True, num_iteration=rounds)
        assert expected.shape[1] == 3 * (rounds or 15) and len(np.unique(expected)) > 3
        for matrix in (x, x.astype(np.float32)):
            leaves = predict(matrix, 1)
            assert leaves.shape == expected.shape and (leaves == expected).all()
    assert compiled.cache_key(text, raw_score=True) != compiled.cache_key(text)


async def test_compiled_propensities_and_stored_scores_equal_lightgbm_ones(
    client, as_role, app, session, tmp_path, monkeypatch
):
    version, model, _, _ = await _serving(session, _App(app, client, as_role))
    by_lightgbm = await _stored(session)

    ids = [r[0] for r in (await session.execute(text("SELECT id FROM customer ORDER BY id"))).all()]
    rows = await fetch_rows(await driver_connection(session), model.spec, [date(2026, 5, 1)], TODAY, customer_ids=ids)
    fresh = PropensityModel.from_bytes(model.to_bytes())
    assert fresh.compile(tmp_path, compile_missing=True)
    np.testing.assert_allclose(fresh.propensities(rows), model.propensities(rows), rtol=1e-12, atol=1e-15)

    # the refresh loads the compiled boosters from the cache directory and stores the same scores and reasons
    monkeypatch.setattr(compiled, "cache_dir", lambda settings: tmp_path)
    compiled._ready.clear()
    await session.execute(
        text(
            "UPDATE customer_offer_state SET valid_until = '-infinity', ranker_version = NULL, ranker_products = NULL,"
            " ranker_propensities = NULL, ranker_reasons = NULL"
        )
    )
    await session.commit()
    await app.state.recommender.refresh_offer_states(everyone=True)
    by_compiled = await _stored(session)
    assert by_compiled.keys() == by_lightgbm.keys()
    assert sum(bool(state["scores"]) for state in by_compiled.values()) >= len(CUSTOMERS)
    for customer, state in by_compiled.items():
        theirs = by_lightgbm[customer]
        assert state["version"] == version and state["reasons"] == theirs["reasons"], customer
        assert state["scores"].keys() == theirs["scores"].keys(), customer
        for code, p in state["scores"].items():
            assert p == pytest.approx(theirs["scores"][code], rel=1e-12, abs=1e-15), (customer, code)
    # the refresh predicted compiled, the reasons' leaves too
    assert set(registry._loaded[version]._compiled) == {"choice", "any_add", "leaves"}
