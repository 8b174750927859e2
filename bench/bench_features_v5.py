"""The cost of FEATURES_V5's two columns (contribution_monthly, churn_risk) on the features SELECT a tier run reads:
the whole population's rows through FEATURES_V4's SELECT and FEATURES_V5's, chunk by chunk as a run reads them
(customer_features_between's range filter), alternating for `--rounds` rounds in one run.

The database needs a demo bank (`tierwise demo`), its contribution margins and a churn model (`tierwise fit-churn`).

Usage: python -m bench.bench_features_v5 --dsn postgresql://... [--rounds 3] [--chunk 5000]
"""

import argparse
import asyncio
import time

import asyncpg

from app.rules.features_sql import BY_RANGE, FEATURES_V4, FEATURES_V5


def _chunked(version) -> str:
    body = version.select(BY_RANGE).replace("id_from", "$1").replace("id_to", "$2")
    return f"SELECT count(*), sum(hashtext(f::text)) FROM ({body}) f"


async def main(dsn: str, rounds: int, chunk: int) -> None:
    conn = await asyncpg.connect(dsn)
    low, high = await conn.fetchrow("SELECT min(id), max(id) FROM customer")
    statements = {"FEATURES_V4": _chunked(FEATURES_V4), "FEATURES_V5": _chunked(FEATURES_V5)}
    times: dict[str, list[float]] = {name: [] for name in statements}
    for _ in range(rounds):
        for name, sql in statements.items():
            started = time.perf_counter()
            rows = 0
            for start in range(low, high + 1, chunk):
                rows += (await conn.fetchrow(sql, start, start + chunk - 1))[0]
            times[name].append(time.perf_counter() - started)
    await conn.close()
    print(f"customers: {rows}, chunk: {chunk}")
    for name, seconds in times.items():
        print(f"{name}: best {min(seconds):.2f} s, rounds " + " / ".join(f"{s:.2f}" for s in seconds))
    print(f"ratio V5 / V4 (best): {min(times['FEATURES_V5']) / min(times['FEATURES_V4']):.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=5000)
    args = parser.parse_args()
    asyncio.run(main(args.dsn, args.rounds, args.chunk))
