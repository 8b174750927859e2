"""Recomputing offer states with the learned ranker's scores against recomputing them alone, in the same run: every
offer state made stale, then `Recommender.refresh_offer_states(everyone=True)` with the model retired (states
alone) and with it serving (states, then every state scored: features, calibrated propensities, reasons); the two
take turns for `--rounds` rounds. Also the scoring of one chunk step by step, in process CPU seconds.

The database needs a demo bank (`tierwise demo`) and a trained model (`tierwise train-ranker --serve always`).

Usage: python -m bench.bench_offer_refresh --dsn postgresql://...
"""

import argparse
import asyncio
import os
import time

import numpy as np
from sqlalchemy import text

from app.core.config import Settings
from app.core.db import create_engine, create_sessionmaker, driver_connection
from app.core.embedded import to_async_url
from app.recommendations.learned import registry, serving
from app.recommendations.learned.features import fetch_rows
from app.recommendations.recommender import Recommender
from bench.harness import execute

try:  # the compiled predictor (a tree before it has none: LightGBM predicts)
    from app.recommendations.learned import compiled
except ImportError:
    compiled = None


async def _steps(sessionmaker, chunk: int) -> dict[str, float]:
    """CPU seconds of each step of scoring one chunk (the first `chunk` customers)."""
    async with sessionmaker() as session:
        _, model = await registry.serving_model(session)
        conn = await driver_connection(session)
        today = await conn.fetchval("SELECT current_date")
        last = await conn.fetchval("SELECT max(as_of) FROM holding_balance WHERE as_of <= $1", today)
        ids = [r[0] for r in await conn.fetch("SELECT id FROM customer ORDER BY id LIMIT $1", chunk)]
        started = time.perf_counter()
        rows = await fetch_rows(conn, model.spec, [(last or today).replace(day=1)], today, customer_ids=ids)
        steps = {"features_statement_wall_s": time.perf_counter() - started}
        states = await conn.fetch(  # the states' candidates, as the refresh reads them
            f"SELECT s.customer_id, s.generation, {serving._CANDIDATES} AS candidates FROM customer_offer_state s "
            "WHERE s.customer_id = ANY($3::bigint[]) AND $1::int IS NOT NULL ORDER BY s.customer_id",
            0,
            model.classes,
            ids,
        )
    scorer = await serving.serving_scorer(sessionmaker)
    rows = rows.take(np.isin(rows.customer_ids, [r["customer_id"] for r in states]))
    matrix = model.matrix(rows)
    for name, step in (
        ("propensities_every_row_cpu_s", lambda: model.propensities(rows, matrix)),
        ("reasons_every_pair_cpu_s", lambda: model.contributions(matrix, serving.REASON_ROUNDS)),
        ("whole_chunk_every_product_cpu_s", lambda: serving._score_chunk(model, rows)),
        ("whole_chunk_candidates_cpu_s", lambda: serving._score_states(scorer, states, rows)),
    ):
        started = time.process_time()
        step()
        steps[name] = time.process_time() - started
    return steps


async def main_async(args) -> None:
    settings = Settings(database_url=args.dsn)
    if args.predict_threads is not None:
        serving.PREDICT_THREADS = args.predict_threads
    engine = create_engine(to_async_url(args.dsn), settings)
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session:
        version = await session.scalar(
            text("SELECT max(version) FROM ranker_model WHERE status IN ('serving', 'retired')")
        )
    if compiled is not None and args.no_compile:
        compiled.cache_key = lambda model_text: None  # as where lleaves cannot run: LightGBM predicts
    elif compiled is not None:  # compiled (or loaded from the cache) before the clock starts
        compiled_dir = compiled.cache_dir(settings)
        async with sessionmaker() as session:
            started = time.perf_counter()
            _, model = await registry.serving_model(session)
            ready = await asyncio.to_thread(model.compile, compiled_dir, compile_missing=True)
            print(f"compiled predictor ready={ready} in {time.perf_counter() - started:.1f} s", flush=True)
    results: dict[str, list[float]] = {"states_alone": [], "states_and_scores": []}
    try:
        for _ in range(args.rounds):
            for name, status in (("states_alone", "retired"), ("states_and_scores", "serving")):
                await execute(args.dsn, "UPDATE ranker_model SET status = $2 WHERE version = $1", version, status)
                await execute(args.dsn, "UPDATE customer_offer_state SET valid_until = '-infinity'")
                if args.settle:  # what autovacuum and the checkpointer would do between a bank's refreshes
                    await execute(args.dsn, "VACUUM customer_offer_state")
                    await execute(args.dsn, "CHECKPOINT")
                started = time.perf_counter()
                counts = await Recommender(settings, sessionmaker).refresh_offer_states(
                    everyone=True, chunk=args.refresh_chunk
                )
                results[name].append(time.perf_counter() - started)
                print(f"{name}: {results[name][-1]:.2f} s {counts}", flush=True)
        steps = await _steps(sessionmaker, args.chunk)
    finally:
        await execute(args.dsn, "UPDATE ranker_model SET status = 'serving' WHERE version = $1", version)
        await engine.dispose()
    load = os.getloadavg()
    print(
        f"rounds={args.rounds} refresh_chunk={args.refresh_chunk} settle={args.settle} "
        f"load_average={load[0]:.1f},{load[1]:.1f},{load[2]:.1f}"
    )
    for name, times in results.items():
        print(f"{name}_s={[round(t, 2) for t in times]}")
    ratios = [b / a for a, b in zip(results["states_alone"], results["states_and_scores"], strict=True)]
    print(
        f"with_scores_over_alone={sum(results['states_and_scores']) / sum(results['states_alone']):.2f} "
        f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})"
    )
    print("one chunk of", args.chunk, {k: round(v, 3) for k, v in steps.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=5000, help="customers of the one chunk scored step by step")
    parser.add_argument("--no-compile", action="store_true", help="LightGBM predicts (no compiled predictor)")
    parser.add_argument("--predict-threads", type=int, help="LightGBM threads of a chunk's prediction (serving)")
    parser.add_argument(
        "--settle",
        action="store_true",
        help="vacuum the offer states and take a checkpoint before each refresh, off the clock",
    )
    parser.add_argument(
        "--refresh-chunk", type=int, default=5000, help="customers per statement of the refresh (both arms)"
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
