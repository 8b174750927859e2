"""Training the learned ranker: month pairs (features at month t, label = products added at t + 1) read in chunks
of customers, the last pair held out to calibrate and measure, then the boosters fitted again on every pair.

Memory stays bounded: every row with a label is kept, and of the rest a seeded sample (by customer, month and
seed, whatever the chunking) of at most `max_negatives` rows, weighted back to the population.
"""

import asyncio
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import lightgbm
import numpy as np

from app.recommendations.learned.features import (
    ALL,
    FeatureRows,
    FeatureSpec,
    add_months,
    feature_matrix,
    fetch_rows,
    learn_vocabularies,
)
from app.recommendations.learned.model import Calibration, PropensityModel, fit_platt

K = 7


class NotEnoughHistory(ValueError):
    """The bank's history holds too little to learn from: no version is stored, the rules keep ranking."""


@dataclass
class TrainingOptions:
    until: date
    """The last month whose adds are labels (its first day): the held-out month."""
    months: int = 12
    """Month pairs: feature months until - months .. until - 1."""
    seed: int = 7
    rounds: int = 100
    learning_rate: float = 0.05
    num_leaves: int = 31
    threads: int = 2
    chunk_customers: int = 50_000
    max_negatives: int = 600_000
    max_choice_rows: int = 250_000
    """The choice booster learns from at most this many adds (a seeded sample), so its time stays bounded."""
    min_adds: int = 5
    """A product needs this many adds in the training rows to be learned (else it is left to the rules)."""
    refit: bool = True
    """Fit again on every pair, held-out month included, after calibrating (the calibration is kept)."""


@dataclass
class TrainingData:
    matrix: np.ndarray
    rows: FeatureRows
    labels: np.ndarray
    weights: np.ndarray


@dataclass
class TrainingResult:
    model: PropensityModel
    metrics: dict[str, Any]
    window: tuple[date, date]
    """First and last label month."""
    held_out: TrainingData = field(repr=False)


def _concat(parts: list[FeatureRows]) -> FeatureRows:
    return FeatureRows(
        np.concatenate([p.customer_ids for p in parts]),
        [m for p in parts for m in p.months],
        np.vstack([p.masks for p in parts]),
        np.vstack([p.accepted for p in parts]),
        np.vstack([p.numbers for p in parts]),
        [c for p in parts for c in p.categories],
    )


async def collect_rows(
    conn, spec: FeatureSpec, months: list[date], today: date, options: TrainingOptions
) -> tuple[FeatureRows, int]:
    """Every labelled row and a seeded sample of the others, chunk by chunk of customer ids; returns the rows and
    the share of unlabelled rows kept (per million)."""
    low, high, customers = await conn.fetchrow(
        "SELECT min(id), max(id), count(*) FROM customer WHERE erased_at IS NULL"
    )
    if not customers:
        raise NotEnoughHistory("no customers to train on")
    keep = min(ALL, max(1, options.max_negatives * ALL // (customers * len(months))))
    parts = []
    for start in range(low, high + 1, options.chunk_customers):
        parts.append(
            await fetch_rows(
                conn,
                spec,
                months,
                today,
                id_range=(start, start + options.chunk_customers - 1),
                keep_per_million=keep,
                seed=options.seed,
                reported_only=True,
            )
        )
    return _concat(parts), keep


def _params(options: TrainingOptions, objective: str, **extra) -> dict[str, Any]:
    return {
        "objective": objective,
        "learning_rate": options.learning_rate,
        "num_leaves": options.num_leaves,
        "min_data_in_leaf": 20,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "seed": options.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": options.threads,
        "verbose": -1,
        **extra,
    }


def _fit(
    matrix: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    classes: list[int],
    spec: FeatureSpec,
    options: TrainingOptions,
) -> tuple[lightgbm.Booster | None, lightgbm.Booster]:
    """The choice booster (one row per product added, among `classes`) and the any-add booster (every row)."""
    names = [n.replace(":", "__") for n in spec.names()]
    class_of = {p: i for i, p in enumerate(classes)}
    row, product = np.nonzero(labels[:, classes])
    if len(row) > options.max_choice_rows:
        keep = np.sort(np.random.default_rng(options.seed).choice(len(row), options.max_choice_rows, replace=False))
        row, product = row[keep], product[keep]
    choice = None  # one product learned: it is every add's choice
    if len(classes) > 1:
        choice_data = lightgbm.Dataset(matrix[row], label=product, feature_name=names, free_raw_data=True)
        choice = lightgbm.train(
            _params(options, "multiclass", num_class=len(class_of)), choice_data, num_boost_round=options.rounds
        )
    any_data = lightgbm.Dataset(
        matrix, label=labels.any(axis=1).astype(np.float32), weight=weights, feature_name=names, free_raw_data=True
    )
    any_add = lightgbm.train(_params(options, "binary"), any_data, num_boost_round=options.rounds)
    return choice, any_add


def average_precision(actual: set[int], ranked: list[int], k: int = K) -> float:
    if not actual:
        return 0.0
    hits, total = 0, 0.0
    for i, product in enumerate(ranked[:k]):
        if product in actual:
            hits += 1
            total += hits / (i + 1)
    return total / min(len(actual), k)


def map_at_k(scores: np.ndarray, labels: np.ndarray, fallback: np.ndarray | None = None, k: int = K) -> float:
    """MAP@k over the rows with at least one label: products by score (NaN after every scored one, then by
    `fallback`, e.g. popularity)."""
    rows = np.nonzero(labels.any(axis=1))[0]
    if not len(rows):
        return 0.0
    fallback = np.zeros(scores.shape[1]) if fallback is None else fallback
    total = 0.0
    for i in rows:
        s = scores[i]
        order = np.lexsort((-fallback, -np.nan_to_num(s, nan=-1.0)))
        total += average_precision(set(np.nonzero(labels[i])[0]), list(order), k)
    return total / len(rows)


def calibration_report(
    propensity: np.ndarray, labels: np.ndarray, weights: np.ndarray, bins: int = 10
) -> dict[str, float]:
    """Brier score, expected calibration error (10 bins by predicted value) and predicted over observed adds, over
    the (row, product) pairs the model scored, weighted like the population."""
    known = ~np.isnan(propensity)
    p = propensity[known]
    y = labels[known].astype(np.float64)
    w = np.broadcast_to(weights[:, None], propensity.shape)[known]
    if not w.sum():
        return {"brier": 0.0, "ece": 0.0, "predicted_over_observed": 0.0}
    edges = np.quantile(p, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    ece = sum(abs(np.sum(w[which == b] * (p[which == b] - y[which == b]))) for b in range(bins)) / w.sum()
    observed = np.sum(w * y)
    return {
        "brier": round(float(np.sum(w * (p - y) ** 2) / w.sum()), 6),
        "ece": round(float(ece), 6),
        "predicted_over_observed": round(float(np.sum(w * p) / observed), 4) if observed else 0.0,
    }


def _split(
    rows: FeatureRows, matrix: np.ndarray, labels: np.ndarray, weights: np.ndarray, mask: np.ndarray
) -> TrainingData:
    index = np.nonzero(mask)[0]
    return TrainingData(matrix[index], rows.take(mask), labels[index], weights[index])


def train(rows: FeatureRows, keep_per_million: int, spec: FeatureSpec, options: TrainingOptions) -> TrainingResult:
    """Fit on the pairs before the held-out month, calibrate and measure on it, then (refit) fit on them all.
    CPU-bound: callers in an event loop run it in a thread."""
    started = time.perf_counter()
    held_out_month = add_months(options.until, -1)
    vocabularies = learn_vocabularies(rows.categories, len(spec.categorical()))
    matrix = feature_matrix(rows, vocabularies)
    labels = rows.labels()
    weights = np.where(labels.any(axis=1), 1.0, ALL / keep_per_million)
    is_held_out = np.array([m == held_out_month for m in rows.months])
    fit_part = _split(rows, matrix, labels, weights, ~is_held_out)
    held_out = _split(rows, matrix, labels, weights, is_held_out)
    adds = fit_part.labels.sum(axis=0)
    classes = [int(p) for p in np.nonzero(adds >= options.min_adds)[0]]
    if not classes or not held_out.labels.any() or not fit_part.labels.any():
        raise NotEnoughHistory("too few products added in the training window to learn from")
    adders = fit_part.labels.any(axis=1)
    calibration = Calibration(adds_per_adder=float(fit_part.labels[adders].sum() / adders.sum()))

    choice, any_add = _fit(fit_part.matrix, fit_part.labels, fit_part.weights, classes, spec, options)
    model = PropensityModel(
        spec,
        vocabularies,
        [spec.products[p] for p in classes],
        choice,
        any_add,
        calibration,
        {
            "rounds": options.rounds,
            "learning_rate": options.learning_rate,
            "num_leaves": options.num_leaves,
            "seed": options.seed,
            "threads": options.threads,
            "lightgbm": lightgbm.__version__,
        },
    )
    raw_any = any_add.predict(held_out.matrix)
    calibration.slope, calibration.intercept = fit_platt(
        raw_any, held_out.labels.any(axis=1).astype(float), held_out.weights
    )
    propensity = model.propensities(held_out.rows, held_out.matrix)
    popularity = fit_part.rows.held().sum(axis=0).astype(float)
    metrics = {
        "held_out_month": held_out_month.isoformat(),
        "map7": round(map_at_k(propensity, held_out.labels, popularity), 4),
        "held_out_customers_with_adds": int(held_out.labels.any(axis=1).sum()),
        **calibration_report(propensity, held_out.labels, held_out.weights),
        "training_rows": int(len(fit_part.matrix)),
        "rows_with_adds": int(adders.sum()),
        "negatives_kept_per_million": keep_per_million,
        "products_learned": len(classes),
    }
    if options.refit:
        every_adds = labels.sum(axis=0)
        classes = [p for p in classes if every_adds[p] >= options.min_adds]
        model.choice, model.any_add = _fit(matrix, labels, weights, classes, spec, options)
        model.classes = [spec.products[p] for p in classes]
    metrics["fit_seconds"] = round(time.perf_counter() - started, 2)
    window = (add_months(options.until, -options.months + 1), options.until)
    return TrainingResult(model, metrics, window, held_out)


async def train_from_database(conn, spec: FeatureSpec, options: TrainingOptions, today: date) -> TrainingResult:
    """Read the training rows (one statement per chunk of customers) and train in a worker thread."""
    started = time.perf_counter()
    months = [add_months(options.until, -k) for k in range(options.months, 0, -1)]
    rows, keep = await collect_rows(conn, spec, months, today, options)
    read_seconds = round(time.perf_counter() - started, 2)
    result = await asyncio.to_thread(train, rows, keep, spec, options)
    result.metrics["read_seconds"] = read_seconds
    return result
