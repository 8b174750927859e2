"""Read throughput on loopback with wrk: GET /v1/customers/{id}/benefits beside GET /v1/customers/{id}/tiers, in
the same run, for the same random customers, the endpoints taking turns round by round. Goal: benefits at least
0.5 of tiers' throughput.

Usage: python -m bench.bench_benefits                       (a scratch database with a demo bank of --customers)
       python -m bench.bench_benefits --dsn postgresql://... (a database loaded with `tierwise demo`)
"""

import argparse
import asyncio
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import uuid

from app.core.embedded import create_database, drop_database
from app.core.migrations import upgrade_to_head
from bench.bench_reads import sample_ids, wrk
from bench.harness import ROOT, create_key, plain_dsn, serve, server_url


@contextlib.contextmanager
def demo_database(dsn: str | None, customers: int):
    """The given database, or a scratch one loaded with `tierwise demo` (default policies, benefits, a tier run)."""
    if dsn:
        yield dsn
        return
    url = create_database(server_url(), f"tierwise_benefits_{uuid.uuid4().hex[:8]}")
    try:
        upgrade_to_head(url)
        scratch = plain_dsn(url)
        subprocess.run(
            [sys.executable, "-m", "app.cli", "demo", "--customers", str(customers)],
            env={**os.environ, "TIERWISE_DATABASE_URL": scratch},
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        yield scratch
    finally:
        drop_database(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", help="a database loaded with `tierwise demo` (default: a scratch demo bank)")
    parser.add_argument("--customers", type=int, default=20_000, help="the scratch demo bank's size")
    parser.add_argument("--sample", type=int, default=5_000, help="customers asked for, at random")
    parser.add_argument("--duration", type=int, default=30, help="seconds of load per endpoint, over all rounds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    with demo_database(args.dsn, args.customers) as dsn:
        ids = asyncio.run(sample_ids(dsn, args.sample))
        random.shuffle(ids)
        key = asyncio.run(create_key(dsn, "app"))
        with tempfile.NamedTemporaryFile("w", suffix=".ids", delete=False) as handle:
            handle.write("\n".join(ids) + "\n")
        slice_s = max(args.duration // args.rounds, 1)
        results: dict[str, list[dict]] = {"tiers": [], "benefits": []}
        try:
            with serve(dsn) as base:
                prefix = base + "/v1/customers/"
                for suffix in ("/tiers", "/benefits"):  # warm-up, not recorded
                    wrk(prefix, handle.name, key, suffix, 5, args.connections)
                for _ in range(args.rounds):
                    for name in results:
                        results[name].append(wrk(prefix, handle.name, key, f"/{name}", slice_s, args.connections))
        finally:
            os.unlink(handle.name)
    rps = {name: sum(r["rps"] for r in rounds) / len(rounds) for name, rounds in results.items()}
    print(
        f"customers_sampled={len(ids)} rounds={args.rounds} seconds_per_round={slice_s} "
        f"connections={args.connections} load_average={os.getloadavg()}"
    )
    for name, rounds in results.items():
        print(
            f"{name}: rps={rps[name]:.1f} p99_ms(worst round)={max(r['p99_ms'] for r in rounds)} "
            f"non_2xx={sum(r['non_2xx'] for r in rounds)} rounds_rps={[r['rps'] for r in rounds]}"
        )
    per_round = [b["rps"] / t["rps"] for b, t in zip(results["benefits"], results["tiers"], strict=True)]
    print(
        f"benefits_ratio_to_tiers={rps['benefits'] / rps['tiers']:.3f} "
        f"(rounds: {', '.join(f'{ratio:.3f}' for ratio in per_round)}; goal >= 0.5)"
    )


if __name__ == "__main__":
    main()
