"""The learned ranker at scale and the choice of library: training on a demo bank's monthly history (features read
set-based in SQL, chunk by chunk; LightGBM fitted, calibrated on the held-out month, fitted again on every month),
scoring 1,000 customers (features and prediction), and LightGBM beside scikit-learn's HistGradientBoosting on the
same training rows, each library in a process of its own so that its peak memory is its own.

Usage:
  python -m bench.bench_ranker train --dsn postgresql://.../tierwise_ranker_bench [--until 2026-11 --months 11]
  python -m bench.bench_ranker score --dsn ...            (the serving model: features and scores of 1,000)
  python -m bench.bench_ranker compare --dsn ...          (the rows of a demo bank)
  python -m bench.bench_ranker compare --santander PATH   (the Santander sample, loaded into a scratch database)
"""

import argparse
import asyncio
import json
import pickle
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

import numpy as np

from app.core.config import Settings
from app.core.db import create_engine, create_sessionmaker, driver_connection
from app.core.embedded import create_database, drop_database, to_async_url
from app.recommendations.learned.features import add_months, feature_matrix, feature_spec, fetch_rows
from app.recommendations.learned.training import TrainingOptions, collect_rows, map_at_k, train

SETTINGS = Settings(environment="test")


def _peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


async def _rows(dsn: str, until: date, months: int, seed: int, policy: str):
    engine = create_engine(to_async_url(dsn), SETTINGS)
    try:
        async with create_sessionmaker(engine)() as session:
            conn = await driver_connection(session)
            spec = await feature_spec(conn, policy)
            options = TrainingOptions(until=until, months=months, seed=seed)
            started = time.perf_counter()
            rows, keep = await collect_rows(
                conn, spec, [add_months(until, -k) for k in range(months, 0, -1)], until, options
            )
            return spec, rows, keep, options, time.perf_counter() - started
    finally:
        await engine.dispose()


async def bench_train(dsn: str, until: date, months: int, seed: int, policy: str) -> dict:
    """Read, train (as `tierwise train-ranker` does, without storing), then score 1,000 customers."""
    spec, rows, keep, options, read_s = await _rows(dsn, until, months, seed, policy)
    read_peak = _peak_mb()
    started = time.perf_counter()
    result = train(rows, keep, spec, options)
    fit_s = time.perf_counter() - started
    model_bytes = len(result.model.to_bytes())
    engine = create_engine(to_async_url(dsn), SETTINGS)
    try:
        async with create_sessionmaker(engine)() as session:
            conn = await driver_connection(session)
            ids = [r[0] for r in await conn.fetch("SELECT id FROM customer ORDER BY id DESC LIMIT 1000")]
            today = await conn.fetchval("SELECT current_date")
            started = time.perf_counter()
            scored = await fetch_rows(conn, spec, [today.replace(day=1)], today, customer_ids=ids)
            features_s = time.perf_counter() - started
            started = time.perf_counter()
            result.model.propensities(scored)
            predict_s = time.perf_counter() - started
    finally:
        await engine.dispose()
    customers = len(set(rows.customer_ids.tolist()))
    return {
        "customers_with_rows": customers,
        "month_pairs": months,
        "rows_kept": len(rows),
        "negatives_kept_per_million": keep,
        "read_seconds": round(read_s, 1),
        "fit_seconds": round(fit_s, 1),
        "total_seconds": round(read_s + fit_s, 1),
        "peak_rss_mb_after_read": read_peak,
        "peak_rss_mb": _peak_mb(),
        "model_kb": round(model_bytes / 1024),
        "score_1000_features_ms": round(features_s * 1000),
        "score_1000_predict_ms": round(predict_s * 1000),
        **{
            f"held_out_{k}": v
            for k, v in result.metrics.items()
            if k in ("map7", "ece", "brier", "predicted_over_observed")
        },
    }


async def bench_score(dsn: str, customers: int = 1000, repeats: int = 3) -> dict:
    """The serving model scoring `customers` customers: their features (one statement) and the prediction."""
    from app.recommendations.learned.registry import serving_model

    engine = create_engine(to_async_url(dsn), SETTINGS)
    try:
        async with create_sessionmaker(engine)() as session:
            version, model = await serving_model(session)
            conn = await driver_connection(session)
            today = await conn.fetchval("SELECT current_date")
            timings = []
            for repeat in range(repeats):
                ids = [
                    r[0]
                    for r in await conn.fetch(
                        "SELECT id FROM customer WHERE id % $1 = $2 LIMIT $3", 97, repeat, customers
                    )
                ]
                started = time.perf_counter()
                rows = await fetch_rows(conn, model.spec, [today.replace(day=1)], today, customer_ids=ids)
                features_s = time.perf_counter() - started
                started = time.perf_counter()
                model.propensities(rows)
                timings.append((features_s, time.perf_counter() - started))
    finally:
        await engine.dispose()
    best = min(timings, key=sum)
    return {
        "version": version,
        "customers": customers,
        "features_ms": round(best[0] * 1000),
        "predict_ms": round(best[1] * 1000),
        "model_kb": round(len(model.to_bytes()) / 1024),
    }


# ---- LightGBM beside HistGradientBoosting, each in a process of its own ------------------------------------------


def _fit_library(library: str, path: str, rounds: int, seed: int) -> dict:
    """The choice model (which product, given an add) on the rows before the held-out month; MAP@7 on it."""
    with open(path, "rb") as handle:
        data = pickle.load(handle)
    x, y, held_x, held_labels, held_held = data["x"], data["y"], data["held_x"], data["held_labels"], data["held"]
    baseline = _peak_mb()
    started = time.perf_counter()
    if library == "lightgbm":
        import lightgbm

        model = lightgbm.train(
            {
                "objective": "multiclass",
                "num_class": int(y.max()) + 1,
                "learning_rate": 0.05,
                "num_leaves": 31,
                "min_data_in_leaf": 20,
                "feature_fraction": 0.8,
                "bagging_fraction": 0.8,
                "bagging_freq": 1,
                "seed": seed,
                "deterministic": True,
                "force_row_wise": True,
                "num_threads": 2,
                "verbose": -1,
            },
            lightgbm.Dataset(x, label=y),
            num_boost_round=rounds,
        )
        fit_s = time.perf_counter() - started
        size = len(model.model_to_string().encode())
        predict = model.predict
    else:
        from sklearn.ensemble import HistGradientBoostingClassifier

        model = HistGradientBoostingClassifier(
            max_iter=rounds,
            learning_rate=0.05,
            max_leaf_nodes=31,
            min_samples_leaf=20,
            early_stopping=False,
            random_state=seed,
        )
        model.fit(x, y)
        fit_s = time.perf_counter() - started
        size = len(pickle.dumps(model))

        def predict(matrix):
            out = np.zeros((len(matrix), int(y.max()) + 1))
            out[:, model.classes_] = model.predict_proba(matrix)
            return out

    sample = held_x[:1000]
    started = time.perf_counter()
    predict(sample)
    per_1000 = time.perf_counter() - started
    scores = predict(held_x)
    full = np.zeros(held_labels.shape)
    full[:, data["classes"]] = scores
    full[held_held] = -1
    return {
        "library": library,
        "fit_seconds": round(fit_s, 2),
        "predict_1000_ms": round(per_1000 * 1000, 1),
        "model_kb": round(size / 1024),
        "peak_rss_mb": _peak_mb(),
        "peak_rss_mb_before_fit": baseline,
        "held_out_map7": round(map_at_k(full, held_labels), 4),
        "rows": len(x),
    }


async def _santander_rows(path: Path, seed: int):
    from app.recommendations import evaluation

    data = evaluation.read_snapshots(path)
    current = data.months[-2]
    url = create_database("postgresql://postgres@127.0.0.1:5432/postgres", f"tierwise_bench_{uuid.uuid4().hex[:8]}")
    try:
        from app.core.migrations import upgrade_to_head

        upgrade_to_head(url)
        engine = create_engine(url, SETTINGS)
        try:
            async with create_sessionmaker(engine)() as session:
                await evaluation.load_snapshots(session, data, current)
                await session.commit()
        finally:
            await engine.dispose()
        months = sum(1 for m in data.months if m < current)
        return await _rows(
            url.replace("+asyncpg", ""),
            date.fromisoformat(current).replace(day=1),
            months,
            seed,
            evaluation.SEGMENT_POLICY,
        )
    finally:
        drop_database(url)


async def bench_compare(
    dsn: str | None, santander: Path | None, until: date, months: int, seed: int, rounds: int
) -> list[dict]:
    if santander:
        spec, rows, keep, options, _ = await _santander_rows(santander, seed)
    else:
        spec, rows, keep, options, _ = await _rows(dsn, until, months, seed, "wealth")
    x = feature_matrix(rows, [[]] * len(spec.categorical()))  # categories as unknown: the same for both
    x[:, np.isnan(x).all(axis=0)] = 0.0  # HistGradientBoosting cannot bin a column with no value at all
    labels = rows.labels()
    held_out = np.array([m == add_months(options.until, -1) for m in rows.months])
    classes = [int(p) for p in np.nonzero(labels[~held_out].sum(axis=0) >= options.min_adds)[0]]
    r, c = np.nonzero(labels[~held_out][:, classes])
    payload = {
        "x": x[~held_out][r],
        "y": c,
        "held_x": x[held_out],
        "held_labels": labels[held_out],
        "held": rows.held()[held_out],
        "classes": classes,
    }
    with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as handle:
        pickle.dump(payload, handle)
    try:
        results = []
        for library in ("lightgbm", "sklearn"):
            done = subprocess.run(
                [sys.executable, "-m", "bench.bench_ranker", "fit-one", library, handle.name, str(rounds), str(seed)],
                capture_output=True,
                text=True,
            )
            if done.returncode:
                raise RuntimeError(done.stderr)
            results.append(json.loads(done.stdout))
        return results
    finally:
        Path(handle.name).unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["train", "score", "compare", "fit-one"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--dsn")
    parser.add_argument("--santander", type=Path)
    parser.add_argument("--until", default="2026-11", help="YYYY-MM: the last label month (held out)")
    parser.add_argument("--months", type=int, default=11)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--policy", default="wealth")
    options = parser.parse_args()
    until = date.fromisoformat(f"{options.until}-01")
    if options.what == "fit-one":
        library, path, rounds, seed = options.args
        print(json.dumps(_fit_library(library, path, int(rounds), int(seed))))
    elif options.what == "score":
        print(json.dumps(asyncio.run(bench_score(options.dsn))))
    elif options.what == "train":
        print(json.dumps(asyncio.run(bench_train(options.dsn, until, options.months, options.seed, options.policy))))
    else:
        for line in asyncio.run(
            bench_compare(options.dsn, options.santander, until, options.months, options.seed, options.rounds)
        ):
            print(json.dumps(line))


if __name__ == "__main__":
    main()
