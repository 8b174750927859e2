"""The serving model's scores, computed in bulk and stored with the offer state (customer_offer_state.ranker_*):
the request path reads them and runs no model.

The refresh of offer states scores each chunk of states it stored (`ScoringPipeline`: the model runs on one chunk
in a worker thread while Postgres computes the next chunk's states and features), then `score_states` takes the
states that hold and were not scored by the serving version (computed since, or scored by a version no longer
serving), a chunk of customers at a time, the same way. Per chunk: one set-based features statement
(app/recommendations/learned/features.py, at the month of the last holdings report; by id range when the chunk's
ids are dense), one batch prediction of the calibrated propensities, the top feature contribution to each
product's score (along the decision paths of the model's first rounds: PropensityModel.contributions) as its reason
code, and one pipelined UPDATE that stores them only where the state is still the one that was read (same
generation, and it holds): a write meanwhile makes the state stale, and a state computed again clears its scores
(app/recommendations/offer_state.py). A product the model does not know (new: cold start) gets no score, and the
rule-based propensity ranks it (app/recommendations/ranking.py).
"""

import asyncio
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from app.core.db import driver_connection
from app.recommendations.learned import registry
from app.recommendations.learned.features import COMMON, PER_PRODUCT, fetch_rows
from app.recommendations.offer_state import HOLDS

# The next holding states (by customer id, after $2) that the serving version ($1) has not scored.
_UNSCORED = f"""
SELECT s.customer_id, s.generation FROM customer_offer_state s
WHERE s.customer_id > $2 AND {HOLDS} AND s.ranker_version IS DISTINCT FROM $1::int
ORDER BY s.customer_id LIMIT $3
"""
# The holding states of these customers ($2) that the serving version ($1) has not scored.
_UNSCORED_OF = f"""
SELECT s.customer_id, s.generation FROM customer_offer_state s
WHERE s.customer_id = ANY($2::bigint[]) AND {HOLDS} AND s.ranker_version IS DISTINCT FROM $1::int
ORDER BY s.customer_id
"""

_STORE = f"""
UPDATE customer_offer_state s SET ranker_version = $3, ranker_products = $4::text[],
    ranker_propensities = $5::float8[], ranker_reasons = $6::text[]
WHERE s.customer_id = $1 AND s.generation = $2 AND {HOLDS}
"""

PREDICT_THREADS = 0
"""LightGBM's threads for a chunk's prediction (0: one per core). Measured beside 1 with the model running next to
Postgres computing the next chunk: one per core was 8% faster on a quiet machine (bench/RESULTS.md)."""

REASON_ROUNDS = 20
"""The reasons are the top contributions in the model's first boosting rounds (the strongest splits; the later
rounds refine), which bounds their cost (0.35 s of CPU for 5,000 customers x 18 products against 1.8 s over all
100 rounds); the propensities use every round."""

_SAME = {"held_1m_ago": "RANKER_HELD_LAST_MONTH", "held_2m_ago": "RANKER_HELD_RECENTLY"}
_COMMON = {
    "products_held": "RANKER_PRODUCTS_HELD",
    "products_held_1m_ago": "RANKER_PRODUCTS_HELD",
    "products_added": "RANKER_RECENTLY_ADDED",
    "products_dropped": "RANKER_RECENTLY_DROPPED",
    "age": "RANKER_AGE",
    "tenure_months": "RANKER_TENURE",
    "txn_count_30d": "RANKER_ACTIVITY",
    "txn_amount_30d": "RANKER_ACTIVITY",
    "logins_30d": "RANKER_ACTIVITY",
    "txn_count_90d": "RANKER_ACTIVITY",
    "segment": "RANKER_SEGMENT",
    "tier": "RANKER_TIER",
}


def reason_code(feature: str, product: str) -> str:
    """The reason code of a feature that raised `product`'s score, with its fact after a colon where it has one
    ("RANKER_HOLDS_RELATED:savings_account"): words in app/defaults/reason_texts.json."""
    kind, _, subject = feature.partition(":")
    if kind in ("held", "held_1m_ago", "held_2m_ago", "months_since_held") and subject:
        if subject == product:
            return _SAME.get(kind, "RANKER_HELD_RECENTLY")
        return f"RANKER_HOLDS_RELATED:{subject}"
    if kind == "attribute":
        return "RANKER_PROFILE"
    return _COMMON.get(kind, "RANKER_PROFILE")


def _true_of(model, rows, matrix: np.ndarray, columns: list[int]) -> list[np.ndarray]:
    """Per product at spec positions `columns`: which features' reasons are true of each customer (rows x
    features): one about this product only when the customer held it in the months the features see, one about
    another product only when the customer holds that one, products added or dropped only when there were some."""
    held_now, held_ever = rows.held(), (rows.masks >> 1) != 0
    common = np.repeat(held_now, len(PER_PRODUCT), axis=1)
    rest = np.ones((len(rows), matrix.shape[1] - common.shape[1]), dtype=bool)
    for name in ("products_added", "products_dropped"):
        k = COMMON.index(name)
        rest[:, k] = matrix[:, common.shape[1] + k] > 0
    common = np.concatenate([common, rest], axis=1)
    out = []
    for cj in columns:
        mask = common.copy()
        mask[:, cj * len(PER_PRODUCT) : (cj + 1) * len(PER_PRODUCT)] = held_ever[:, cj : cj + 1]
        out.append(mask)
    return out


def _score_chunk(model, rows) -> list[tuple[int, list[str], list[float], list[str]]]:
    """Per customer of `rows`: the products scored, their calibrated propensities and their reason codes (of the
    largest positive contribution to the product's score among the features whose reason is true of the
    customer)."""
    matrix = model.matrix(rows)
    propensities = model.propensities(rows, matrix, threads=PREDICT_THREADS)
    names = model.spec.names()
    position = {code: i for i, code in enumerate(model.spec.products)}
    columns = [position[c] for c in model.classes]
    if model.choice is not None:
        # rows x classes x features (bias left out): the decision paths' contributions in the first REASON_ROUNDS
        # rounds (PropensityModel.contributions; LightGBM's pred_contrib SHAP values cost 50x as much)
        contributions = model.contributions(matrix, REASON_ROUNDS)[:, :, :-1]
    else:
        raw = np.asarray(model.any_add.predict(matrix, pred_contrib=True))[:, None, :-1]
        contributions = np.repeat(raw, len(columns), axis=1)
    true_of = _true_of(model, rows, matrix, columns)
    top = np.empty(contributions.shape[:2], dtype=np.intp)
    positive = np.empty(contributions.shape[:2], dtype=bool)
    for k in range(len(columns)):  # the largest contribution among the features whose reason is true
        masked = np.where(true_of[k], contributions[:, k, :], -np.inf)
        top[:, k] = masked.argmax(axis=1)
        positive[:, k] = masked[np.arange(len(masked)), top[:, k]] > 0
    # each (product, feature)'s reason code, once per chunk; a reason about the product itself says which month
    codes = [[reason_code(name, code) for name in names] for code in model.classes]
    held_reason = np.array([[c in _HELD_REASONS for c in row] for row in codes])
    table = np.array(codes, dtype=object)
    k_index = np.arange(len(columns))[None, :]
    why = np.where(positive, table[k_index, top], "")
    last_month = (((rows.masks & 4) != 0) & ~rows.held())[:, columns]  # held a month before the month's end
    about_product = positive & held_reason[k_index, top]
    why = np.where(about_product, np.where(last_month, "RANKER_HELD_LAST_MONTH", "RANKER_HELD_RECENTLY"), why)
    scored = propensities[:, columns]
    known = ~np.isnan(scored)
    classes = np.array(model.classes, dtype=object)
    out = []
    for i, customer_id in enumerate(rows.customer_ids):
        keep = known[i]
        out.append((int(customer_id), classes[keep].tolist(), scored[i, keep].tolist(), why[i, keep].tolist()))
    return out


_HELD_REASONS = ("RANKER_HELD_LAST_MONTH", "RANKER_HELD_RECENTLY")


@dataclass(frozen=True)
class ServingScorer:
    """The serving version and what scoring with it reads: the month of the last holdings report and today."""

    version: int
    model: Any
    month: date
    today: date


async def serving_scorer(sessionmaker) -> ServingScorer | None:
    """The serving model, ready to score states; None when no model serves."""
    async with sessionmaker() as session:
        serving = await registry.serving_model(session)
        if serving is None:
            return None
        conn = await driver_connection(session)
        today: date = await conn.fetchval("SELECT current_date")
        last_report = await conn.fetchval("SELECT max(as_of) FROM holding_balance WHERE as_of <= $1", today)
    return ServingScorer(serving[0], serving[1], (last_report or today).replace(day=1), today)


async def _read(scorer: ServingScorer, sessionmaker, statement: str, *args) -> tuple[list, Any]:
    """The unscored holding states `statement` gives and their feature rows (one features statement)."""
    async with sessionmaker() as session:
        conn = await driver_connection(session)
        states = await conn.fetch(statement, scorer.version, *args)
        if not states:
            return states, None
        ids = [r["customer_id"] for r in states]
        if ids[-1] - ids[0] < 2 * len(ids):  # dense ids (a refresh's chunk): read by range, keep the chunk's rows
            rows = await fetch_rows(conn, scorer.model.spec, [scorer.month], scorer.today, id_range=(ids[0], ids[-1]))
            return states, rows.take(np.isin(rows.customer_ids, ids))
        return states, await fetch_rows(conn, scorer.model.spec, [scorer.month], scorer.today, customer_ids=ids)


async def _store(scorer: ServingScorer, sessionmaker, states, found) -> int:
    """Store a chunk's scores where the state is still the one read; a state without features (onboarded since)
    gets none."""
    generation = {r["customer_id"]: r["generation"] for r in states}
    unread = generation.keys() - {cid for cid, *_ in found}
    found = [*found, *((cid, [], [], []) for cid in sorted(unread))]
    async with sessionmaker() as session:
        await (await driver_connection(session)).executemany(
            _STORE,
            [(cid, generation[cid], scorer.version, products, scores, why) for cid, products, scores, why in found],
        )
        await session.commit()
    return len(found)


class ScoringPipeline:
    """Chunks scored one behind the caller: `add` starts the model on a chunk in a worker thread and stores the
    chunk before it, so that the caller has Postgres compute the next chunk's states and features while the model
    scores this one. Statements run one at a time, in the caller's task."""

    def __init__(self, scorer: ServingScorer, sessionmaker) -> None:
        self.scorer, self._sessionmaker = scorer, sessionmaker
        self._pending: tuple[list, asyncio.Future] | None = None
        self.scored = 0

    async def add_ids(self, ids: list[int]) -> None:
        """Score the states of these customers that hold and the serving version has not scored."""
        states, rows = await _read(self.scorer, self._sessionmaker, _UNSCORED_OF, ids)
        if states:
            await self.add(states, rows)

    async def add(self, states, rows) -> None:
        pending, self._pending = self._pending, None
        found = await pending[1] if pending is not None else None  # one chunk in the model at a time
        model = self.scorer.model
        scoring = asyncio.ensure_future(asyncio.to_thread(_score_chunk, model, rows) if len(rows) else _none())
        self._pending = (states, scoring)
        if pending is not None:
            self.scored += await _store(self.scorer, self._sessionmaker, pending[0], found)

    async def drain(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self.scored += await _store(self.scorer, self._sessionmaker, pending[0], await pending[1])

    def cancel(self) -> None:
        """Forget a chunk not stored (after an error): its states stay unscored for the next refresh."""
        if self._pending is not None:
            self._pending[1].cancel()
            self._pending = None


async def _none() -> list:
    return []


async def score_states(sessionmaker, *, chunk: int = 5000, scorer: ServingScorer | None = None) -> int | None:
    """Score with the serving model (`scorer`, else the one serving now) every holding offer state it has not
    scored, `chunk` customers per statement and transaction, the next chunk read while one is scored
    (`sessionmaker`: a zero-argument callable giving an async session context). Returns how many states were
    scored, or None when no model is serving."""
    scorer = scorer or await serving_scorer(sessionmaker)
    if scorer is None:
        return None
    pipeline, after = ScoringPipeline(scorer, sessionmaker), 0
    try:
        while True:
            states, rows = await _read(scorer, sessionmaker, _UNSCORED, after, chunk)
            if not states:
                break
            await pipeline.add(states, rows)
            after = states[-1]["customer_id"]
        await pipeline.drain()
    finally:
        pipeline.cancel()
    return pipeline.scored
