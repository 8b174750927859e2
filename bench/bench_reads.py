"""Read throughput on loopback with wrk: GET /v1/customers/{id}/tiers and GET .../recommendations, each beside a
bare ASGI endpoint doing one asyncpg lookup of the same customer's tier rows, in the same run.

Recommendations are measured twice. First as the service runs most of the day: each customer's offer state holds,
as the scheduled refresh leaves it (the bench runs that refresh first). Then for customers whose state does not
hold, as after a write to their data: another sample, its states made stale before every round, so that a
request computes its customer's state (and stores it; a customer asked for again in the round reads it).

With `--workers N` (N > 1), the same reads are also served by N worker processes (as `tierwise serve --workers N`
runs them: one uvicorn, metrics summed over the processes) beside the single worker, in the same rounds: `tiers_wN`
and `recommendations_wN`, and their ratios to the single worker's.

Usage: python -m bench.bench_reads --dsn postgresql://...   (a database loaded with `tierwise demo`)
"""

import argparse
import asyncio
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

import asyncpg
import httpx

from app.core.config import Settings
from bench.harness import ROOT, create_key, execute, free_port, serve


@contextmanager
def serve_bare(dsn: str):
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.bare_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--loop",
            "uvloop",
        ],
        env={**os.environ, "BARE_DSN": dsn},
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(base + "/bare/none", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def serve_workers(dsn: str, workers: int):
    """The app with `workers` processes (None when 1), counting metrics into a directory of its own."""
    if workers <= 1:
        yield None
        return
    with (
        tempfile.TemporaryDirectory(prefix="tierwise-bench-metrics-") as metrics,
        serve(dsn, workers=workers, env={"PROMETHEUS_MULTIPROC_DIR": metrics}) as base,
    ):
        yield base


def wrk(url: str, ids_file: str, key: str, suffix: str, duration: int, connections: int, delay_ms: int = 0) -> dict:
    out = subprocess.run(
        [
            "wrk",
            "-t",
            "2",
            "-c",
            str(connections),
            "-d",
            f"{duration}s",
            "--latency",
            "-s",
            str(ROOT / "bench" / "random_ids.lua"),
            url,
            "--",
            ids_file,
            key,
            suffix,
            str(delay_ms),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50, p99 = (_ms(re.search(rf"\s{q}%\s+([\d.]+\w+)", out).group(1)) for q in ("50", "99"))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "non_2xx": int(errors.group(1)) if errors else 0}


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


async def refresh_offer_states(dsn: str) -> dict:
    """What the scheduled refresh does after midnight, for every customer (`tierwise refresh-offer-states
    --everyone`): the first run after a demo load computes all states, a later one those that no longer hold."""
    from app.core.db import create_engine, create_sessionmaker
    from app.core.embedded import to_async_url
    from app.recommendations.recommender import Recommender

    settings = Settings(database_url=dsn)
    engine = create_engine(to_async_url(dsn), settings)
    try:
        return await Recommender(settings, create_sessionmaker(engine)).refresh_offer_states(everyone=True)
    finally:
        await engine.dispose()


async def make_states_stale(dsn: str, ids: list[str]) -> None:
    """As a write to these customers would: their offer states no longer hold."""
    await execute(
        dsn,
        "UPDATE customer_offer_state s SET valid_until = '-infinity' FROM customer c "
        "WHERE c.id = s.customer_id AND c.external_id = ANY($1)",
        ids,
    )


def offer_states(base: str) -> tuple[float, float]:
    """The server's counts of offer states read and computed (from /metrics)."""
    text = httpx.get(base + "/metrics").text
    return tuple(
        float(re.search(rf'tierwise_offer_states_total{{outcome="{outcome}"}} ([\d.e+]+)', text)[1])
        for outcome in ("read", "computed")
    )


async def sample_ids(dsn: str, count: int) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT c.external_id FROM customer c WHERE c.erased_at IS NULL "
            "AND EXISTS (SELECT 1 FROM tier_assignment a WHERE a.customer_id = c.id) "
            "ORDER BY random() LIMIT $1",
            count,
        )
        ids = [r[0] for r in rows]
        # Warm the caches for these customers, so that no endpoint pays for reading them from disk first.
        await conn.execute(
            "SELECT count(*) FROM customer_features_for(ARRAY(SELECT id FROM customer WHERE external_id = ANY($1)))",
            ids,
        )
        await conn.execute(
            "SELECT count(*) FROM tier_assignment a JOIN customer c ON c.id = a.customer_id "
            "WHERE c.external_id = ANY($1)",
            ids,
        )
        return ids
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", required=True, help="a database loaded with `tierwise demo`")
    parser.add_argument("--duration", type=int, default=15, help="seconds of load per endpoint, in all rounds")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="the endpoints take turns this many times, so that a machine whose speed drifts "
        "during the run (other work, a shrinking page cache) weighs on each alike",
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--customers", type=int, default=20_000, help="customers sampled (states holding)")
    parser.add_argument(
        "--stale-customers",
        type=int,
        default=100_000,
        help="another sample, whose offer states are made stale before every round",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="also serve with this many worker processes, beside one (when > 1)"
    )
    args = parser.parse_args()

    print(f"offer states refreshed: {asyncio.run(refresh_offer_states(args.dsn))}")
    sampled = asyncio.run(sample_ids(args.dsn, args.customers + args.stale_customers))
    random.shuffle(sampled)
    ids, stale_ids = sampled[: args.customers], sampled[args.customers :]
    key = asyncio.run(create_key(args.dsn, "app"))
    files = {}
    for name, sample in (("ids", ids), ("stale", stale_ids)):
        with tempfile.NamedTemporaryFile("w", suffix=f".{name}", delete=False) as handle:
            handle.write("\n".join(sample) + "\n")
        files[name] = handle.name
    slice_s = max(args.duration // args.rounds, 1)
    results: dict[str, list[dict]] = {"bare": [], "tiers": [], "recommendations": [], "recommendations_state_stale": []}
    states: dict[str, list[float]] = {"recommendations": [0, 0], "recommendations_state_stale": [0, 0]}
    many = f"w{args.workers}"
    with (
        serve_bare(args.dsn) as bare,
        serve(args.dsn) as base,
        serve_workers(args.dsn, args.workers) as base_many,
    ):
        recommendations = (base + "/v1/customers/", key, "/recommendations?explore=true")
        targets = {
            "bare": (bare + "/bare/", "-", "", "ids"),
            "tiers": (base + "/v1/customers/", key, "/tiers", "ids"),
            "recommendations": (*recommendations, "ids"),
            "recommendations_state_stale": (*recommendations, "stale"),
        }
        if base_many is not None:
            targets[f"tiers_{many}"] = (base_many + "/v1/customers/", key, "/tiers", "ids")
            targets[f"recommendations_{many}"] = (
                base_many + "/v1/customers/",
                key,
                "/recommendations?explore=true",
                "ids",
            )
            results.update({f"tiers_{many}": [], f"recommendations_{many}": []})
        for url, api_key, suffix, sample in targets.values():  # warm-up, not recorded
            wrk(url, files[sample], api_key, suffix, 5, args.connections)
        for _ in range(args.rounds):
            for name, (url, api_key, suffix, sample) in targets.items():
                if sample == "stale":
                    asyncio.run(make_states_stale(args.dsn, stale_ids))
                before = offer_states(base)
                results[name].append(wrk(url, files[sample], api_key, suffix, slice_s, args.connections))
                if name in states:
                    states[name] = [
                        total + after - was
                        for total, after, was in zip(states[name], offer_states(base), before, strict=True)
                    ]
        rps = {name: sum(r["rps"] for r in rounds) / len(rounds) for name, rounds in results.items()}
        # Latency at about half the measured maximum rate: 8 connections, each pausing between requests.
        # Each connection cycles every 8 / target seconds; most of the cycle is the pause, the rest the request.
        target = rps["recommendations"] / 2
        delay = int(8 * 1000 / target * 0.85)
        url, api_key, suffix, sample = targets["recommendations"]
        half_rate = wrk(url, files[sample], api_key, suffix, args.duration, 8, delay)
    for file in files.values():
        os.unlink(file)
    print(
        f"customers_sampled={len(ids)} stale_sampled={len(stale_ids)} rounds={args.rounds} "
        f"seconds_per_round={slice_s} connections={args.connections}"
    )
    for name, rounds in results.items():
        print(
            f"{name}: rps={rps[name]:.1f} p99_ms(worst round)={max(r['p99_ms'] for r in rounds)} "
            f"non_2xx={sum(r['non_2xx'] for r in rounds)} rounds_rps={[r['rps'] for r in rounds]}"
        )
    for name, (read, computed) in states.items():
        print(f"{name}: offer states read={read:.0f} computed={computed:.0f}")
    print("recommendations_half_rate: " + " ".join(f"{k}={v}" for k, v in half_rate.items()))
    for name in ("tiers", "recommendations", "recommendations_state_stale"):
        per_round = [r["rps"] / b["rps"] for r, b in zip(results[name], results["bare"], strict=True)]
        print(
            f"{name}_ratio_to_bare={rps[name] / rps['bare']:.3f} "
            f"(rounds: {', '.join(f'{ratio:.3f}' for ratio in per_round)})"
        )
    print(f"recommendations_p99_ms_at_half_rate={half_rate['p99_ms']} (at {half_rate['rps']:.0f} rps)")
    for name in ("tiers", "recommendations"):
        if f"{name}_{many}" in results:
            per_round = [m["rps"] / o["rps"] for m, o in zip(results[f"{name}_{many}"], results[name], strict=True)]
            print(
                f"{name}_{many}_ratio_to_one_worker={rps[f'{name}_{many}'] / rps[name]:.3f} "
                f"(rounds: {', '.join(f'{ratio:.3f}' for ratio in per_round)}) "
                f"{name}_{many}_ratio_to_bare={rps[f'{name}_{many}'] / rps['bare']:.3f}"
            )


if __name__ == "__main__":
    main()
