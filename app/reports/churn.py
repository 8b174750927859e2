"""The churn-risk model: a logistic regression, fitted on the bank's own history of declines, that the
customer_features view scores with (churn_risk, FEATURES_V5).

A decline: a customer's month-end assets fall below (1 - decline_share) of what they were at a month-end, at some
month-end within the next `horizon_months`. Each (customer, complete month-end) with assets is one example; its
features are what the view computes now, computed at that month-end: log assets, their trend against the three
month-ends before (clipped to -1..1), products held, and the logs of logins in 30 days and transactions in 90 days.
The fit is iteratively reweighted least squares in numpy on standardised features with a small ridge, its
coefficients stored on the raw scale (the view multiplies the raw features), one row per version in churn_model.
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.reports.models import ChurnModel

FEATURES = ("log_aum", "aum_trend_3m", "products_held_count", "log_logins_30d", "log_txn_count_90d")
"""In the order of the coefficients the view reads (coefficients[1] .. coefficients[5])."""
DEFAULT_HORIZON_MONTHS, DEFAULT_DECLINE_SHARE, DEFAULT_HOLDOUT_MONTHS = 3, Decimal("0.15"), 2
RIDGE = 1e-4
LOCK = text("SELECT pg_advisory_xact_lock(hashtext('tierwise.churn_model'))")

# One example per (customer, complete month-end with assets) that has `horizon` month-ends after it: month-end
# balances (each product's last balance of the month), on a grid of months from the customer's first (a month
# without balances is zero assets: a customer who left), with the activity windows ending that day.
_EXAMPLES = text("""
WITH balance AS (
    SELECT DISTINCT ON (hb.customer_id, hb.product_code, date_trunc('month', hb.as_of))
           hb.customer_id, hb.product_code, hb.balance,
           (date_part('year', hb.as_of) * 12 + date_part('month', hb.as_of))::int AS month_no
    FROM holding_balance hb
    WHERE hb.as_of < date_trunc('month', current_date)
    ORDER BY hb.customer_id, hb.product_code, date_trunc('month', hb.as_of), hb.as_of DESC
), per_month AS (
    SELECT b.customer_id, b.month_no,
           coalesce(sum(b.balance) FILTER (WHERE p.category IN ('deposit', 'wealth', 'fund', 'insurance')), 0) AS aum,
           count(*) AS products
    FROM balance b JOIN product p ON p.code = b.product_code
    GROUP BY b.customer_id, b.month_no
), months AS (
    SELECT DISTINCT month_no FROM per_month
), grid AS (
    SELECT f.customer_id, m.month_no, coalesce(pm.aum, 0) AS aum, coalesce(pm.products, 0) AS products
    FROM (SELECT customer_id, min(month_no) AS first FROM per_month GROUP BY customer_id) f
    JOIN months m ON m.month_no >= f.first
    JOIN customer c ON c.id = f.customer_id AND c.erased_at IS NULL
    LEFT JOIN per_month pm ON pm.customer_id = f.customer_id AND pm.month_no = m.month_no
), framed AS (
    SELECT g.*,
           avg(aum) OVER (PARTITION BY customer_id ORDER BY month_no RANGE BETWEEN 3 PRECEDING AND 1 PRECEDING)
               AS aum_before,
           min(aum) OVER (PARTITION BY customer_id ORDER BY month_no
                          RANGE BETWEEN 1 FOLLOWING AND CAST(:horizon AS int) FOLLOWING) AS aum_after_min,
           count(*) OVER (PARTITION BY customer_id ORDER BY month_no
                          RANGE BETWEEN 1 FOLLOWING AND CAST(:horizon AS int) FOLLOWING) AS months_after
    FROM grid g
)
SELECT f.customer_id,
       make_date(((f.month_no - 1) / 12), ((f.month_no - 1) % 12) + 1, 1) AS month,
       ln(1 + f.aum)::float8 AS log_aum,
       least(greatest(coalesce(f.aum / nullif(coalesce(f.aum_before, f.aum), 0) - 1, 0), -1), 1)::float8
           AS aum_trend_3m,
       f.products::float8 AS products_held_count,
       ln(1 + coalesce(act.logins, 0))::float8 AS log_logins_30d,
       ln(1 + coalesce(act.txns, 0))::float8 AS log_txn_count_90d,
       (f.aum_after_min < (1 - CAST(:decline_share AS numeric)) * f.aum) AS declined
FROM framed f
CROSS JOIN LATERAL (
    SELECT sum(ad.logins) FILTER (WHERE ad.day > month_end.day - 30) AS logins, sum(ad.txn_count) AS txns
    FROM (SELECT (make_date(((f.month_no - 1) / 12), ((f.month_no - 1) % 12) + 1, 1)
                  + interval '1 month - 1 day')::date AS day) month_end,
         customer_activity_daily ad
    WHERE ad.customer_id = f.customer_id AND ad.day > month_end.day - 90 AND ad.day <= month_end.day
) act
WHERE f.aum > 0 AND f.months_after = CAST(:horizon AS int)
ORDER BY f.month_no, f.customer_id
""")


@dataclass
class Examples:
    months: np.ndarray  # datetime64[D], the month of each example's month-end (its first day)
    features: np.ndarray  # (n, len(FEATURES))
    declined: np.ndarray  # bool

    def where(self, mask: np.ndarray) -> "Examples":
        return Examples(self.months[mask], self.features[mask], self.declined[mask])


async def load_examples(session: AsyncSession, horizon_months: int, decline_share: Decimal) -> Examples:
    rows = (await session.execute(_EXAMPLES, {"horizon": horizon_months, "decline_share": decline_share})).all()
    return Examples(
        months=np.array([row.month for row in rows], dtype="datetime64[D]"),
        features=np.array([[getattr(row, name) for name in FEATURES] for row in rows], dtype=float).reshape(
            len(rows), len(FEATURES)
        ),
        declined=np.array([row.declined for row in rows], dtype=bool),
    )


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float = RIDGE, iterations: int = 100) -> tuple[float, np.ndarray]:
    """(intercept, coefficients) on the raw scale of `x`, by Newton's method (IRLS) on standardised columns with an
    L2 penalty of ridge x n on the slopes (so that a separable or constant column cannot diverge)."""
    n, k = x.shape
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    design = np.hstack([np.ones((n, 1)), (x - mean) / scale])
    penalty = np.diag([0.0] + [ridge * n] * k)
    beta = np.zeros(k + 1)
    for _ in range(iterations):
        p = sigmoid(design @ beta)
        gradient = design.T @ (y - p) - penalty @ beta
        hessian = (design * (p * (1 - p))[:, None]).T @ design + penalty
        step = np.linalg.solve(hessian + 1e-12 * np.eye(k + 1), gradient)
        beta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    slopes = beta[1:] / scale
    return float(beta[0] - np.sum(slopes * mean)), slopes


def predict(intercept: float, coefficients: np.ndarray, x: np.ndarray) -> np.ndarray:
    return sigmoid(intercept + x @ coefficients)


def auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """The area under the ROC curve (Mann-Whitney, ties counted half); None without both classes."""
    positives, n = int(labels.sum()), len(labels)
    if positives == 0 or positives == n:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    average_ranks = ends - (counts - 1) / 2.0  # 1-based average rank of each distinct score
    rank_sum = average_ranks[inverse][labels].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * (n - positives)))


def rule_of_thumb(x: np.ndarray) -> np.ndarray:
    """The baseline a relationship manager would use: one point each for assets down more than 10% on their
    3-month average, no login in 30 days, no transaction in 90 days."""
    column = {name: x[:, i] for i, name in enumerate(FEATURES)}
    return (
        (column["aum_trend_3m"] < -0.10).astype(float)
        + (column["log_logins_30d"] == 0).astype(float)
        + (column["log_txn_count_90d"] == 0).astype(float)
    )


def evaluate_examples(examples: Examples, holdout_months: int) -> dict[str, Any]:
    """Fit on the months before the last `holdout_months` label months, score those: the model's and the rule of
    thumb's AUC on them."""
    months = np.unique(examples.months)
    if len(months) <= holdout_months:
        raise ValueError(f"{len(months)} label months: need more than the {holdout_months} held out")
    cut = months[-holdout_months]
    train, test = examples.where(examples.months < cut), examples.where(examples.months >= cut)
    intercept, coefficients = fit_logistic(train.features, train.declined.astype(float))
    return {
        "train_months": [str(months[0]), str(months[-holdout_months - 1])],
        "holdout_months": [str(cut), str(months[-1])],
        "train_rows": len(train.declined),
        "holdout_rows": len(test.declined),
        "holdout_decline_rate": round(float(test.declined.mean()), 4) if len(test.declined) else None,
        "auc": auc(predict(intercept, coefficients, test.features), test.declined),
        "baseline_auc": auc(rule_of_thumb(test.features), test.declined),
    }


async def evaluate(
    session: AsyncSession,
    horizon_months: int = DEFAULT_HORIZON_MONTHS,
    decline_share: Decimal = DEFAULT_DECLINE_SHARE,
    holdout_months: int = DEFAULT_HOLDOUT_MONTHS,
) -> dict[str, Any]:
    """The offline evaluation (`tierwise evaluate-churn`): AUC on held-out months beside the rule of thumb."""
    examples = await load_examples(session, horizon_months, decline_share)
    result = evaluate_examples(examples, holdout_months)
    return {"horizon_months": horizon_months, "decline_share": str(decline_share), **result}


async def fit_and_store(
    session: AsyncSession,
    fitted_by: str,
    horizon_months: int = DEFAULT_HORIZON_MONTHS,
    decline_share: Decimal = DEFAULT_DECLINE_SHARE,
    holdout_months: int = DEFAULT_HOLDOUT_MONTHS,
) -> ChurnModel | None:
    """A new version fitted on every label month (the held-out evaluation recorded in its metrics), which the view
    scores with from the moment it commits; None when the history has no decline, or none but declines."""
    examples = await load_examples(session, horizon_months, decline_share)
    positives = int(examples.declined.sum())
    if positives == 0 or positives == len(examples.declined):
        return None
    metrics = evaluate_examples(examples, holdout_months) if len(np.unique(examples.months)) > holdout_months else {}
    intercept, coefficients = fit_logistic(examples.features, examples.declined.astype(float))
    await session.execute(LOCK)
    version = (await session.scalar(select(func.max(ChurnModel.version)))) or 0
    months = np.unique(examples.months)
    model = ChurnModel(
        version=version + 1,
        features=list(FEATURES),
        intercept=intercept,
        coefficients=[float(c) for c in coefficients],
        horizon_months=horizon_months,
        decline_share=decline_share,
        window_from=months[0].item(),
        window_until=months[-1].item(),
        rows=len(examples.declined),
        positives=positives,
        metrics=metrics,
        fitted_by=fitted_by,
    )
    session.add(model)
    await session.flush()
    return model
