"""The serving model's scores, computed in bulk and stored with the offer state (customer_offer_state.ranker_*):
the request path reads them and runs no model.

The refresh of offer states scores each chunk of states it stored (`ScoringPipeline`: the chunk's features are
read on a second connection while the first computes its states, and the model runs on one chunk in a worker
thread while Postgres computes the next chunk's states and features), then `score_states` takes the
states that hold and were not scored by the serving version (computed since, or scored by a version no longer
serving), a chunk of customers at a time, the same way. The model spends nothing on what cannot be shown: the
statement that stores a refreshed state, and the sweep's read of a state, give which of the model's products are
still candidates by what the state knows (not held, eligible, suitable, consented: offer_state.CANDIDATE_BITS). Per
chunk: one set-based features statement (app/recommendations/learned/current.py, fetch_current_rows, one packed
row: at the month of the last holdings report; by id range when the chunk's ids are dense), one batch prediction
of the calibrated propensities over the customers with a candidate (the choice booster is a softmax over every
product: a customer's row runs every tree or none), the top feature contribution to the score of each
customer's SHOWN_AT_MOST candidates of the highest score (along the decision paths of the model's first rounds:
PropensityModel.top_contributions, over those pairs only) as its reason code, and one UPDATE over flat arrays that
stores the candidates' scores only where the state is still the one that was read (same generation, and it holds): a
write meanwhile makes the state stale, and a state computed again clears its scores
(app/recommendations/offer_state.py). A product the model does not know (new: cold start) gets no score, and the
rule-based propensity ranks it (app/recommendations/ranking.py).
"""

import asyncio
import functools
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import driver_connection
from app.recommendations.learned import registry
from app.recommendations.learned.current import fetch_current_rows
from app.recommendations.learned.features import COMMON, PER_PRODUCT
from app.recommendations.learned.model import REASON_ROUNDS
from app.recommendations.offer_state import CANDIDATE_BITS, HOLDS
from app.recommendations.schemas import LIMIT_MAX

# Per state: which of the model's products ($2, in the model's order) are still candidates, as bits.
_CANDIDATES = CANDIDATE_BITS.format(model_products="$2")
# The next holding states (by customer id, after $3) that the serving version ($1) has not scored.
_UNSCORED = f"""
SELECT s.customer_id, s.generation, {_CANDIDATES} AS candidates FROM customer_offer_state s
WHERE s.customer_id > $3 AND {HOLDS} AND s.ranker_version IS DISTINCT FROM $1::int
ORDER BY s.customer_id LIMIT $4
"""

# One statement per chunk: per state read ($1, $2), its scores as array literals (`_literals`: the products,
# propensities and reasons in the model's order; '{}' for none), parsed per row: no grouping of flat arrays.
_STORE = f"""
UPDATE customer_offer_state s SET ranker_version = $3, ranker_products = f.products::text[],
    ranker_propensities = f.propensities::float8[], ranker_reasons = f.reasons::text[]
FROM unnest($1::bigint[], $2::bigint[], $4::text[], $5::text[], $6::text[])
     AS f(customer_id, generation, products, propensities, reasons)
WHERE s.customer_id = f.customer_id AND s.generation = f.generation AND {HOLDS}
"""


SHOWN_AT_MOST = LIMIT_MAX
"""The most items a list shows (the API's `limit`): reasons are computed for each customer's this many candidates
of the highest score (propensity x value x lever, as a list without exploration ranks them), not for the rest. A
lower candidate shown (drawn up by exploration, or when a request's own filters, e.g. `exclude`, channel, contact
policy, remove higher ones) has its score but no model reason; its other reasons stay."""

PREDICT_THREADS = 0
"""LightGBM's threads for a chunk's prediction (0: one per core). Measured beside 1 with the model running next to
Postgres computing the next chunk: one per core was 8% faster on a quiet machine (bench/RESULTS.md)."""


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


def _true_of(rows, matrix: np.ndarray, at: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Per (customer row `at`, product at spec position `columns`) pair: which features' reasons are true of the
    customer (pairs x features): one about this product only when the customer held it in the months the features
    see, one about another product only when the customer holds that one, products added or dropped only when there
    were some."""
    held_now, held_ever = rows.held(), (rows.masks >> 1) != 0
    width = len(PER_PRODUCT)
    common = np.repeat(held_now, width, axis=1)
    rest = np.ones((len(rows), matrix.shape[1] - common.shape[1]), dtype=bool)
    for name in ("products_added", "products_dropped"):
        k = COMMON.index(name)
        rest[:, k] = matrix[:, common.shape[1] + k] > 0
    mask = np.concatenate([common, rest], axis=1)[at]
    own = columns[:, None] * width + np.arange(width)[None, :]  # the pair's product's own features
    mask[np.arange(len(at))[:, None], own] = held_ever[at, columns][:, None]
    return mask


@dataclass(frozen=True)
class Scored:
    """A chunk's scores as flat arrays, one entry per (customer, product) scored, each customer's in the model's
    order of products: the product codes, calibrated propensities and reason codes ("" when none)."""

    customer_ids: np.ndarray
    products: np.ndarray
    propensities: np.ndarray
    reasons: np.ndarray


def _score_chunk(
    model, rows, candidates: np.ndarray | None = None, worth: tuple | None = None, shown: int | None = None
) -> Scored:
    """The chunk's scores: per customer of `rows` and product of the model that is a candidate (`candidates`: rows
    x model.classes, bool; None: every product), the calibrated propensity, and for the `shown` candidates of the
    highest score (propensity x `worth`: per class, the value weights and the levers; None: every candidate) the
    reason code of the largest positive contribution to the product's score among the features whose reason is
    true of the customer. The model runs only on the customers with a candidate (a row's propensities do not
    depend on the other rows: the same numbers as over the whole chunk), its reasons only on the pairs whose
    reasons can be shown."""
    n, classes = len(rows), np.array(model.classes, dtype=object)
    candidates = np.ones((n, len(classes)), dtype=bool) if candidates is None else candidates
    some = candidates.any(axis=1)
    rows, candidates = rows.take(some), candidates[some]
    if not len(rows):
        return Scored(np.zeros(0, dtype=np.int64), classes[:0], np.zeros(0), np.zeros(0, dtype=object))
    matrix = model.matrix(rows)
    position = {code: i for i, code in enumerate(model.spec.products)}
    columns = np.array([position[c] for c in model.classes], dtype=np.intp)
    scored = model.propensities(rows, matrix, threads=PREDICT_THREADS)[:, columns]
    candidates = candidates & ~np.isnan(scored)
    # the pairs whose reasons can be shown: each customer's `shown` candidates of the highest score, ties by code
    explained = candidates.copy()
    if shown is not None and worth is not None:
        score = np.where(candidates, scored * worth[0] * worth[1], -np.inf)  # as ranking.py: p x value x lever
        by_code = np.argsort(np.argsort(classes.astype(str)))
        order = np.lexsort((np.broadcast_to(by_code, score.shape), -score), axis=1)
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(len(classes))[None, :], axis=1)
        explained &= rank < shown
    at, k = np.nonzero(explained)
    names = model.spec.names()
    true = _true_of(rows, matrix, at, columns[k])
    if model.choice is not None:
        # the largest of the decision paths' contributions in the first REASON_ROUNDS rounds among the features
        # whose reason is true (PropensityModel.top_contributions; LightGBM's pred_contrib SHAP values cost 50x as
        # much)
        top, positive = model.top_contributions(matrix, REASON_ROUNDS, (at, k), true)
    else:
        contributions = np.asarray(model.any_add.predict(matrix, pred_contrib=True))[at, :-1]
        masked = np.where(true, contributions, -np.inf)
        top = masked.argmax(axis=1)  # the largest contribution among the features whose reason is true
        positive = masked[np.arange(len(at)), top] > 0
    # each (product, feature)'s reason code; a reason about the product itself says which month
    table, held_reason = _reason_table(tuple(model.classes), tuple(names))
    last_month = (((rows.masks & 4) != 0) & ~rows.held())[at, columns[k]]  # held a month before the month's end
    why = np.where(positive, table[k, top], "")
    about_product = positive & held_reason[k, top]
    why = np.where(about_product, np.where(last_month, "RANKER_HELD_LAST_MONTH", "RANKER_HELD_RECENTLY"), why)
    reasons = np.full(candidates.shape, "", dtype=object)
    reasons[at, k] = why
    i, j = np.nonzero(candidates)
    return Scored(rows.customer_ids[i], classes[j], scored[i, j], reasons[i, j])


_HELD_REASONS = ("RANKER_HELD_LAST_MONTH", "RANKER_HELD_RECENTLY")


@functools.lru_cache(maxsize=4)
def _reason_table(classes: tuple[str, ...], names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per (product, feature) of a model: the reason code (`reason_code`), and whether it is one about the product
    itself (which the month it was held decides); built once per model, not per chunk."""
    codes = [[reason_code(name, code) for name in names] for code in classes]
    held = np.array([[c in _HELD_REASONS for c in row] for row in codes], dtype=bool).reshape(len(codes), len(names))
    return np.array(codes, dtype=object).reshape(len(codes), len(names)), held


@dataclass(frozen=True)
class ServingScorer:
    """The serving version and what scoring with it reads: the month of the last holdings report, today, and per
    product of the model its value weight and lever (`worth`: the ranking's, for the candidates whose reasons can
    be shown)."""

    version: int
    model: Any
    month: date
    today: date
    worth: tuple[np.ndarray, np.ndarray]


async def serving_scorer(sessionmaker, compiled_dir: Path | None = None) -> ServingScorer | None:
    """The serving model, ready to score states; None when no model serves. With `compiled_dir`, its boosters
    predict compiled to native code where they were compiled there (when trained: PropensityModel.compile)."""
    async with sessionmaker() as session:
        serving = await registry.serving_model(session)
        if serving is None:
            return None
        if compiled_dir is not None:
            await asyncio.to_thread(serving[1].compile, compiled_dir)
        conn = await driver_connection(session)
        today: date = await conn.fetchval("SELECT current_date")
        last_report = await conn.fetchval("SELECT max(as_of) FROM holding_balance WHERE as_of <= $1", today)
        worth = await conn.fetch(
            "SELECT m.code, p.value_weight::float8 AS value, p.lever::float8 AS lever "
            "FROM unnest($1::text[]) WITH ORDINALITY AS m(code, k) LEFT JOIN product p ON p.code = m.code ORDER BY m.k",
            serving[1].classes,
        )
    value = np.array([r["value"] if r["value"] is not None else 0.0 for r in worth])
    lever = np.array([r["lever"] if r["lever"] is not None else 0.0 for r in worth])
    return ServingScorer(serving[0], serving[1], (last_report or today).replace(day=1), today, (value, lever))


async def _read(scorer: ServingScorer, sessionmaker, statement: str, *args) -> tuple[list, Any]:
    """The unscored holding states `statement` gives and their feature rows (one features statement)."""
    async with sessionmaker() as session:
        conn = await driver_connection(session)
        states = await conn.fetch(statement, scorer.version, scorer.model.classes, *args)
        if not states:
            return states, None
        return states, await _features(scorer, conn, [r["customer_id"] for r in states])


async def _features(scorer: ServingScorer, conn, ids: list[int]):
    """The feature rows of these customers (ascending ids): by id range when they are dense (a refresh's chunk)."""
    spec = scorer.model.spec
    if ids[-1] - ids[0] < 2 * len(ids):
        rows = await fetch_current_rows(conn, spec, scorer.month, scorer.today, id_range=(ids[0], ids[-1]))
        return rows.take(np.isin(rows.customer_ids, ids))
    return await fetch_current_rows(conn, spec, scorer.month, scorer.today, customer_ids=ids)


# The state generations of a chunk's customers, as two arrays in customer order: by id range ($1, $2; a refresh's
# chunk, whose ids are dense: the range's other states are read too, and not used) or by ids ($1).
_GENERATIONS = """
SELECT coalesce(array_agg(customer_id ORDER BY customer_id), '{{}}') AS ids,
       coalesce(array_agg(generation ORDER BY customer_id), '{{}}') AS generations
FROM customer_offer_state WHERE {chunk}
"""
_GENERATIONS_BY_RANGE = _GENERATIONS.format(chunk="customer_id BETWEEN $1::bigint AND $2::bigint")
_GENERATIONS_BY_IDS = _GENERATIONS.format(chunk="customer_id = ANY($1::bigint[])")


@dataclass(frozen=True)
class Generations:
    """State generations by customer (`ids` ascending); 0 for a customer without a state."""

    ids: np.ndarray
    generations: np.ndarray

    def of(self, customer_ids: list[int]) -> list[int]:
        """The generations of these customers, in their order."""
        if not len(self.ids):
            return [0] * len(customer_ids)
        at = np.searchsorted(self.ids, customer_ids).clip(max=len(self.ids) - 1)
        return np.where(self.ids[at] == np.asarray(customer_ids, dtype=np.int64), self.generations[at], 0).tolist()


async def prefetch(scorer: ServingScorer, sessionmaker, ids: list[int]) -> tuple[Generations, Any]:
    """Before their states are computed (on another connection, at the same time): these customers' state
    generations (0: no state yet), then their feature rows. A chunk's scores are stored at these generations: a
    write after they were read moves a state's generation on, and that state is left to the sweep."""
    async with sessionmaker() as session:
        conn = await driver_connection(session)
        if ids and ids[-1] - ids[0] < 2 * len(ids):
            found = await conn.fetchrow(_GENERATIONS_BY_RANGE, ids[0], ids[-1])
        else:
            found = await conn.fetchrow(_GENERATIONS_BY_IDS, ids)
        generations = Generations(np.array(found["ids"], dtype=np.int64), np.array(found["generations"], np.int64))
        return generations, await _features(scorer, conn, ids)


def _score_states(scorer: ServingScorer, states, rows) -> Scored:
    """The scores of a chunk's states (their feature rows `rows`): only their candidates (the states' bits)."""
    model = scorer.model
    ids = np.array([r["customer_id"] for r in states], dtype=np.int64)
    bits = np.array([r["candidates"] for r in states], dtype=np.int64)
    bits = bits[np.searchsorted(ids, rows.customer_ids)]  # the states are in customer order
    candidates = ((bits[:, None] >> np.arange(len(model.classes))[None, :]) & 1).astype(bool)
    if len(model.classes) > 62:  # more than a bigint's bits: every product (the same scores, more work)
        candidates = None
    return _score_chunk(model, rows, candidates, scorer.worth, SHOWN_AT_MOST)


class _Quoted(dict):
    """Each text as an array literal's element, quoted (so "" is an empty string, not a syntax error): computed once
    per distinct text (a chunk's product and reason codes are a few dozen)."""

    def __missing__(self, value) -> str:
        self[value] = quoted = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
        return quoted


class _Formats(dict):
    """Per count of floats, the format of their array literal, each float with 17 significant digits."""

    def __missing__(self, count: int) -> str:
        self[count] = text = "{" + ",".join(["%.17g"] * count) + "}"
        return text


def _quoted(values, texts: _Quoted) -> str:
    """An array literal of text values, every element quoted."""
    return "{" + ",".join(map(texts.__getitem__, values)) + "}"


def _literals(states, found: Scored | None) -> tuple[list[str], list[str], list[str]]:
    """Per state read (in its order), its scores as three array literals: products, propensities and reasons;
    '{}' where it has none. A propensity is written with 17 significant digits, which read back as the same float8
    (any double's 17 digits do: IEEE 754) and cost a third less than its shortest text (repr): one format per
    number of scores, applied to the state's tuple of floats."""
    empty = ["{}"] * len(states)
    products, propensities, reasons = list(empty), list(empty), list(empty)
    if found is None or not len(found.customer_ids):
        return products, propensities, reasons
    at = {r["customer_id"]: i for i, r in enumerate(states)}
    starts = np.flatnonzero(np.r_[True, found.customer_ids[1:] != found.customer_ids[:-1]])
    ends = np.r_[starts[1:], len(found.customer_ids)]
    values, codes, why, texts = found.propensities.tolist(), found.products.tolist(), found.reasons.tolist(), _Quoted()
    formats = _Formats()
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        i = at.get(int(found.customer_ids[start]))
        if i is None:
            continue
        products[i] = _quoted(codes[start:end], texts)
        propensities[i] = formats[end - start] % tuple(values[start:end])
        reasons[i] = _quoted(why[start:end], texts)
    return products, propensities, reasons


async def _store(scorer: ServingScorer, sessionmaker, states, generations: list[int], found: Scored | None) -> int:
    """Store a chunk's scores where the state is still the one read (at `generations`, one per state), in one
    statement; a state without features (onboarded since) or without candidates gets none."""
    async with sessionmaker() as session:
        await (await driver_connection(session)).execute(
            _STORE, [r["customer_id"] for r in states], generations, scorer.version, *_literals(states, found)
        )
        await session.commit()
    return len(states)


class ScoringPipeline:
    """Chunks scored one behind the caller: `add` starts the model on a chunk in a worker thread and stores the
    chunk before it, so that the caller has Postgres compute the next chunk's states and features while the model
    scores this one. A chunk's features and its scores' store run on connections of their own beside the caller's
    statements (one of each at a time), where sessions have connections of their own."""

    def __init__(self, scorer: ServingScorer, sessionmaker) -> None:
        self.scorer, self._sessionmaker = scorer, sessionmaker
        self._pending: tuple[list, list[int], asyncio.Future] | None = None
        self._prefetching: asyncio.Future | None = None
        self._storing: asyncio.Future | None = None
        self._separate: bool | None = None
        self.scored = 0

    async def _own_connections(self) -> bool:
        """Whether each session is a connection of the engine's pool (the service's, the command line's), so that
        statements may run at the same time; sessions on one connection (the tests') run them in turn."""
        if self._separate is None:
            async with self._sessionmaker() as session:  # no connection is taken until a statement runs
                self._separate = isinstance(session.bind, AsyncEngine)
        return self._separate

    async def prefetch(self, ids: list[int]) -> asyncio.Future:
        """Start reading these customers' generations and features (`prefetch`) on a connection of the engine's
        pool, for `add_stored` once their states are computed. Sessions on one connection (the tests') read them
        now, before the states."""
        reading = prefetch(self.scorer, self._sessionmaker, ids)
        if not await self._own_connections():
            done = asyncio.get_running_loop().create_future()
            done.set_result(await reading)
            return done
        self._prefetching = asyncio.ensure_future(reading)
        return self._prefetching

    async def add_stored(self, stored, prefetched: tuple[Generations, Any]) -> None:
        """Score the states a chunk's refresh just stored (`stored`: each one's customer_id and candidate bits, as
        the catalog's `refreshing_for_ranker` gives them) from `prefetched` (`prefetch`, before the states were
        computed: the generations to store the scores at, and their features)."""
        generations, rows = prefetched
        states = sorted(stored, key=lambda r: r["customer_id"])
        if states:
            ids = [r["customer_id"] for r in states]
            await self.add(states, rows.take(np.isin(rows.customer_ids, ids)), generations.of(ids))

    async def add(self, states, rows, generations: list[int] | None = None) -> None:
        """Start the model on these states (their feature rows `rows`; stored at `generations`, else each state's
        own "generation"), and store the chunk before them."""
        pending, self._pending = self._pending, None
        found = await pending[2] if pending is not None else None  # one chunk in the model at a time
        scoring = asyncio.ensure_future(
            asyncio.to_thread(_score_states, self.scorer, states, rows) if len(rows) else _none()
        )
        self._pending = (states, [r["generation"] for r in states] if generations is None else generations, scoring)
        if pending is not None:
            await self._store(pending[0], pending[1], found, at_once=False)

    async def _store(self, states, generations: list[int], found: Scored | None, *, at_once: bool) -> None:
        """Store a chunk's scores after the chunk before it is stored: on a connection of its own while the caller
        goes on to the next chunk's states (its statement off the caller's chain of statements), unless `at_once`
        or the sessionmaker has one connection."""
        if self._storing is not None:
            storing, self._storing = self._storing, None
            self.scored += await storing
        storing = _store(self.scorer, self._sessionmaker, states, generations, found)
        if at_once or not await self._own_connections():
            self.scored += await storing
        else:
            self._storing = asyncio.ensure_future(storing)

    async def drain(self) -> None:
        """Store every chunk scored or being scored; none is left in flight."""
        pending, self._pending = self._pending, None
        if pending is not None:
            await self._store(pending[0], pending[1], await pending[2], at_once=True)
        elif self._storing is not None:
            storing, self._storing = self._storing, None
            self.scored += await storing

    def cancel(self) -> None:
        """Forget a chunk not stored (after an error): its states stay unscored for the next refresh."""
        if self._pending is not None:
            self._pending[2].cancel()
            self._pending = None
        if self._storing is not None:  # a store in flight is rolled back; a failed one's error is the caller's
            if not self._storing.done():
                self._storing.cancel()
            elif not self._storing.cancelled():
                self._storing.exception()  # retrieved: not logged again by asyncio when the task is collected
            self._storing = None
        if self._prefetching is not None and not self._prefetching.done():
            self._prefetching.cancel()


async def _none() -> None:
    return None


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
