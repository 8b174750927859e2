"""The candidate statement of GET .../recommendations with and without the contacts that offer no product
(programme invitations, managers' declined contacts: app/recommendations/queries.CONTACTS_BEYOND_OFFERS), side by
side in one run: the same customers, the two statements alternating per customer, each customer's offer state
holding (as the scheduled refresh keeps it). Prints the median and mean time per statement (round trip on
loopback) and the ratio, for random customers and for customers who were invited to a programme; and the statement
a request runs, with the contact policy's outcome stored with the state (`queries.reading`, "stored").

Usage: python -m bench.bench_contact_filter --dsn postgresql://...   (a database loaded with `tierwise demo`)
"""

import argparse
import asyncio
import statistics
import time
from datetime import datetime

import asyncpg

from app.core.config import Settings
from app.recommendations import offer_state, queries
from bench.bench_reads import refresh_offer_states

INVITED = """
SELECT c.external_id FROM customer c
WHERE EXISTS (SELECT 1 FROM community_membership m WHERE m.customer_id = c.id)
   OR EXISTS (SELECT 1 FROM activity_participation p WHERE p.customer_id = c.id)
ORDER BY random() LIMIT $1
"""
RANDOM = "SELECT external_id FROM customer WHERE erased_at IS NULL ORDER BY random() LIMIT $1"


def statements() -> dict[str, queries.Statement]:
    without = queries.CANDIDATES.replace(queries.CONTACTS_BEYOND_OFFERS, "")
    assert without != queries.CANDIDATES
    return {
        "without": queries.Statement().then(f"WITH requested_customer AS ({offer_state.STATE_OF_CUSTOMER}){without}"),
        "with": queries.Statement().then(
            f"WITH requested_customer AS ({offer_state.STATE_OF_CUSTOMER}){queries.CANDIDATES}"
        ),
        "stored": queries.reading(),  # the outcome stored with the state (each customer's counted in round 0)
    }


async def measure(conn, ids: list[str], rounds: int) -> dict[str, list[float]]:
    settings = Settings()
    arguments = dict(
        primary_policy=settings.primary_policy,
        channel="mobile",
        exclude=[],
        winback_days=settings.winback_days,
        explain=False,
    )
    built = statements()
    times: dict[str, list[float]] = {name: [] for name in built}
    for external_id in ids:  # the outcomes counted and stored with the states, as a first request stores them
        await conn.fetchrow(
            *queries.reading_contact().arguments(external_id=external_id, now=datetime.now().astimezone(), **arguments)
        )
    for round_ in range(rounds + 1):  # round 0 warms the caches and the prepared statements
        for n, external_id in enumerate(ids):
            order = list(built.items()) if (n + round_) % 2 == 0 else list(reversed(built.items()))
            for name, statement in order:
                args = statement.arguments(external_id=external_id, now=datetime.now().astimezone(), **arguments)
                started = time.perf_counter()
                row = await conn.fetchrow(*args)
                elapsed = time.perf_counter() - started
                assert row is not None, f"no offer state holds for {external_id}"
                if round_:
                    times[name].append(elapsed)
    return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print("offer states refreshed:", await refresh_offer_states(args.dsn))
    conn = await asyncpg.connect(args.dsn)
    try:
        for label, sample in (("random customers", RANDOM), ("customers invited to a programme", INVITED)):
            ids = [r[0] for r in await conn.fetch(sample, args.customers)]
            times = await measure(conn, ids, args.rounds)
            med = {name: statistics.median(t) * 1e6 for name, t in times.items()}
            mean = {name: statistics.fmean(t) * 1e6 for name, t in times.items()}
            print(
                f"{label} ({len(ids)} x {args.rounds} rounds): without {med['without']:.0f} us median "
                f"({mean['without']:.0f} mean), with {med['with']:.0f} us median ({mean['with']:.0f} mean); "
                f"with / without {med['with'] / med['without']:.3f} median, {mean['with'] / mean['without']:.3f} mean; "
                f"stored {med['stored']:.0f} us median ({mean['stored']:.0f} mean), stored / with "
                f"{med['stored'] / med['with']:.3f} median"
            )
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
