"""The churn model: the numpy fit and AUC against scikit-learn's, the examples built from a known balance history,
and the features view scoring with the stored version exactly as the model does."""

import math
from datetime import date, timedelta
from decimal import Decimal

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sqlalchemy import text

from app.reports.churn import FEATURES, auc, evaluate_examples, fit_and_store, fit_logistic, load_examples, predict
from tests.tiering.test_assignment import make_customer


def _data(seed: int, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(10, 2, n), rng.normal(0, 0.3, n), rng.integers(1, 6, n), rng.exponential(1, n)])
    logit = -1.0 + 0.3 * (x[:, 0] - 10) - 2.0 * x[:, 1] + 0.2 * x[:, 2] - 0.5 * x[:, 3]
    return x, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)


def test_the_irls_fit_matches_scikit_learns_unpenalised_fit():
    x, y = _data(1)
    intercept, coefficients = fit_logistic(x, y, ridge=0.0)
    reference = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(x, y)
    assert intercept == pytest.approx(reference.intercept_[0], abs=1e-4)
    assert coefficients == pytest.approx(reference.coef_[0], abs=1e-4)
    # and it recovers the generating slopes roughly
    assert coefficients[1] == pytest.approx(-2.0, abs=0.4)


def test_a_constant_or_separating_column_does_not_diverge():
    x, y = _data(2, 500)
    x = np.column_stack([x, np.zeros(len(y)), y * 5])  # a constant column, and one that separates the classes
    intercept, coefficients = fit_logistic(x, y)
    assert np.all(np.isfinite(coefficients)) and math.isfinite(intercept)
    assert coefficients[4] == 0.0 and coefficients[5] > 0


def test_auc_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, 300).astype(float)  # many ties, like the rule of thumb's points
    labels = rng.random(300) < 0.2 + 0.1 * scores
    assert auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert auc(np.array([0.1, 0.9]), np.array([False, True])) == 1.0
    assert auc(np.array([0.1, 0.9]), np.array([True, True])) is None


def _month_end(months_ago: int) -> date:
    first = date.today().replace(day=1)
    for _ in range(months_ago - 1):
        first = (first - timedelta(days=1)).replace(day=1)
    return first - timedelta(days=1)


async def _balances(session, external_id: str, history: list[int]) -> int:
    """Month-end savings balances, oldest first, ending last month; the customer's id."""
    customer_id = await session.scalar(text("SELECT id FROM customer WHERE external_id = :e"), {"e": external_id})
    await session.execute(text("DELETE FROM holding_balance WHERE customer_id = :c"), {"c": customer_id})
    for months_ago, balance in zip(range(len(history), 0, -1), history, strict=True):
        await session.execute(
            text(
                "INSERT INTO holding_balance (customer_id, product_code, as_of, balance) "
                "VALUES (:c, 'savings_account', :d, :b)"
            ),
            {"c": customer_id, "d": _month_end(months_ago), "b": balance},
        )
    return customer_id


async def test_examples_label_a_decline_within_the_horizon(client, as_role, wealth, session):
    await make_customer(client, as_role, "X", "500.00")
    await make_customer(client, as_role, "Y", "1300.00")
    x = await _balances(session, "X", [1000, 1000, 500, 500])
    await _balances(session, "Y", [1000, 1200, 1300, 1300])
    await session.execute(
        text("INSERT INTO customer_activity_daily (customer_id, day, logins, txn_count) VALUES (:c, :d, 3, 7)"),
        {"c": x, "d": _month_end(2) - timedelta(days=5)},
    )
    examples = await load_examples(session, 1, Decimal("0.15"))
    # months 4, 3 and 2 ago have a month after them; X declines after month 3 (1000 -> 500), nobody else
    assert len(examples.declined) == 6 and examples.declined.sum() == 1
    column = {name: examples.features[:, i] for i, name in enumerate(FEATURES)}
    declined = int(np.flatnonzero(examples.declined)[0])
    assert examples.months[declined] == np.datetime64(_month_end(3).replace(day=1))
    assert column["log_aum"][declined] == pytest.approx(math.log(1001))
    two_ago = int(np.flatnonzero(np.isclose(column["log_aum"], math.log(501)))[0])  # X at 500, two months ago
    assert column["aum_trend_3m"][two_ago] == pytest.approx(-0.5)  # 500 against (1000 + 1000) / 2
    assert column["log_logins_30d"][two_ago] == pytest.approx(math.log(4))
    assert column["log_txn_count_90d"][two_ago] == pytest.approx(math.log(8))
    assert column["products_held_count"][two_ago] == 1
    assert column["log_logins_30d"][declined] == 0  # the activity was after that month-end
    assert len((await load_examples(session, 2, Decimal("0.15"))).declined) == 4  # two months need two after them


async def test_the_view_scores_with_the_newest_version(client, as_role, wealth, session):
    histories = {
        "P1": [1000, 1000, 500, 500, 500],
        "P2": [1000, 1200, 1300, 1300, 1400],
        "P3": [2000, 2000, 2000, 900, 900],
        "P4": [5000, 5100, 5200, 5300, 5400],
    }
    for external_id, history in histories.items():
        await make_customer(client, as_role, external_id, f"{history[-1]}.00")
        await _balances(session, external_id, history)
    assert (await session.execute(text("SELECT churn_risk FROM customer_features"))).scalars().all() == [None] * 4
    model = await fit_and_store(session, "test", horizon_months=1, decline_share=Decimal("0.15"), holdout_months=1)
    assert (model.version, model.rows, model.positives) == (1, 16, 2)
    assert model.features == list(FEATURES) and model.metrics["holdout_rows"] == 4
    await _assert_scored_with(session, model)
    second = await fit_and_store(session, "test", horizon_months=2, decline_share=Decimal("0.15"), holdout_months=1)
    assert second.version == 2 and second.coefficients != model.coefficients
    await _assert_scored_with(session, second)


async def _assert_scored_with(session, model) -> None:
    rows = (
        await session.execute(
            text(
                "SELECT external_id, churn_risk, aum, aum_avg_3m, products_held_count, logins_30d, txn_count_90d "
                "FROM customer_features"
            )
        )
    ).all()
    assert len(rows) == 4
    for row in rows:
        aum = float(row.aum)
        trend = min(max(aum / float(row.aum_avg_3m) - 1, -1), 1)
        features = [aum, trend, row.products_held_count, row.logins_30d, row.txn_count_90d]
        x = np.array(
            [
                [
                    math.log(1 + features[0]),
                    features[1],
                    features[2],
                    math.log(1 + features[3]),
                    math.log(1 + features[4]),
                ]
            ]
        )
        expected = predict(model.intercept, np.array(model.coefficients), x)[0]
        assert float(row.churn_risk) == pytest.approx(expected, abs=6e-5), row.external_id


def test_evaluation_holds_out_the_last_months():
    x, y = _data(4, 3000)
    from app.reports.churn import Examples

    months = np.repeat(np.array(["2026-01-01", "2026-02-01", "2026-03-01"], dtype="datetime64[D]"), 1000)
    result = evaluate_examples(Examples(months, np.column_stack([x, np.zeros(3000)]), y.astype(bool)), 1)
    assert (result["train_rows"], result["holdout_rows"]) == (2000, 1000)
    assert result["holdout_months"] == ["2026-03-01", "2026-03-01"]
    assert result["auc"] > 0.7  # the generating model is learnable
    with pytest.raises(ValueError):
        evaluate_examples(Examples(months[:10], x[:10, :5], y[:10].astype(bool)), 1)


async def test_the_scheduled_refit_stores_a_version_when_there_is_history(
    client, as_role, wealth, session, sessionmaker
):
    from app.reports.scheduled import refit_churn_model

    assert await refit_churn_model(sessionmaker) == {"version": None}  # no history of declines yet
    for external_id, history in {
        "R1": [1000, 1000, 400, 400, 400, 400],
        "R2": [900, 950, 1000, 1000, 1100, 1100],
    }.items():
        await make_customer(client, as_role, external_id, f"{history[-1]}.00")
        await _balances(session, external_id, history)
    await session.commit()
    logged = await refit_churn_model(sessionmaker)
    assert logged["version"] == 1 and logged["rows"] == 6  # horizon 3: months 6, 5 and 4 ago, two customers
    stored = await session.execute(text("SELECT fitted_by, horizon_months, positives FROM churn_model"))
    assert stored.one() == ("schedule", 3, 2)  # R1 falls after months 6 and 5 ago


async def test_contribution_and_churn_risk_are_attributes_rules_can_use(client, as_role, wealth):
    attributes = {a["name"]: a for a in (await client.get("/v1/attributes", headers=as_role("admin"))).json()["items"]}
    assert attributes["churn_risk"]["type"] == "number" and attributes["contribution_monthly"]["unit"] == "currency"
    tiers = [
        {"code": "watch", "label": "Watch", "rank": 20, "condition": {"attr": "churn_risk", "op": "gte", "value": 0.2}},
        {"code": "rest", "label": "Rest", "rank": 10, "condition": {"always": True}},
    ]
    created = await client.post(
        "/v1/tier-policies",
        headers=as_role("admin"),
        json={"policy_key": "churnwatch", "name": "Watch", "tiers": tiers},
    )
    assert created.status_code == 201, created.text
