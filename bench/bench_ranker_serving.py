"""GET recommendations with the learned ranker serving (its propensities read from the offer state) beside the
rule-based ranking and a bare asyncpg endpoint, in the same run: the endpoints take turns for `--rounds` rounds.

The database needs a demo bank (`tierwise demo`) and a trained model (`tierwise train-ranker --serve always`). The
bench refreshes every offer state first (which scores them with the serving version), then alternates: bare; the
rule-based ranking (the model retired, so stored scores are not read); the model serving (the same states, scored).
After each switch it waits for the server's ranking statistics to expire (TIERWISE_RANKING_STATS_SECONDS, 5 s),
which is when an instance sees the serving version change.

Usage: python -m bench.bench_ranker_serving --dsn postgresql://...
"""

import argparse
import asyncio
import os
import random
import tempfile
import time

import asyncpg

from bench.bench_reads import refresh_offer_states, sample_ids, serve_bare, wrk
from bench.harness import create_key, execute, serve


async def _set_serving(dsn: str, version: int, serving: bool) -> None:
    status = "serving" if serving else "retired"
    await execute(dsn, "UPDATE ranker_model SET status = $2 WHERE version = $1", version, status)


async def _serving_version(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        version = await conn.fetchval("SELECT version FROM ranker_model WHERE status = 'serving'")
        scored = await conn.fetchval("SELECT count(*) FROM customer_offer_state WHERE ranker_version = $1", version)
        print(f"serving version {version}, offer states scored by it: {scored}")
        return version
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--duration", type=int, default=30, help="seconds of load per endpoint, over all rounds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--customers", type=int, default=5_000)
    args = parser.parse_args()

    started = time.perf_counter()
    refreshed = asyncio.run(refresh_offer_states(args.dsn))
    print(f"offer states refreshed: {refreshed} in {time.perf_counter() - started:.1f} s")
    version = asyncio.run(_serving_version(args.dsn))
    ids = asyncio.run(sample_ids(args.dsn, args.customers))
    random.shuffle(ids)
    key = asyncio.run(create_key(args.dsn, "app"))
    with tempfile.NamedTemporaryFile("w", suffix=".ids", delete=False) as handle:
        handle.write("\n".join(ids) + "\n")
    slice_s = max(args.duration // args.rounds, 1)
    results: dict[str, list[dict]] = {"bare": [], "rule_based": [], "model": []}
    try:
        with serve_bare(args.dsn) as bare, serve(args.dsn) as base:
            targets = {
                "bare": (bare + "/bare/", "-", "", None),
                "rule_based": (base + "/v1/customers/", key, "/recommendations?explore=true", False),
                "model": (base + "/v1/customers/", key, "/recommendations?explore=true", True),
            }
            for url, api_key, suffix, _ in targets.values():  # warm-up, not recorded
                wrk(url, handle.name, api_key, suffix, 3, args.connections)
            for _ in range(args.rounds):
                for name, (url, api_key, suffix, serving) in targets.items():
                    if serving is not None:
                        asyncio.run(_set_serving(args.dsn, version, serving))
                        time.sleep(5.5)  # the server's ranking statistics expire: it sees the switch
                    results[name].append(wrk(url, handle.name, api_key, suffix, slice_s, args.connections))
    finally:
        asyncio.run(_set_serving(args.dsn, version, True))
        os.unlink(handle.name)
    rps = {name: sum(r["rps"] for r in rounds) / len(rounds) for name, rounds in results.items()}
    print(
        f"customers_sampled={len(ids)} rounds={args.rounds} seconds_per_round={slice_s} connections={args.connections}"
    )
    for name, rounds in results.items():
        print(
            f"{name}: rps={rps[name]:.1f} p99_ms(worst round)={max(r['p99_ms'] for r in rounds)} "
            f"non_2xx={sum(r['non_2xx'] for r in rounds)} rounds_rps={[r['rps'] for r in rounds]}"
        )
    for name in ("rule_based", "model"):
        print(f"{name}_ratio_to_bare={rps[name] / rps['bare']:.3f}")
    print(f"model_over_rule_based={rps['model'] / rps['rule_based']:.3f}")


if __name__ == "__main__":
    main()
