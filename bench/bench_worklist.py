"""A manager's worklist with every task kind on: the first read of the day (generating the tasks, set-based per
kind, near-miss and gone quiet computed in Python over the portfolio only) and the next read (nothing new), for a
portfolio of 200 customers beside one of 2,000, in the same run. Goal: bounded by the portfolio, not the
population: the cost per customer about the same for both portfolios, the next read a small part of the first.

Usage: python -m bench.bench_worklist --customers 20000     (a scratch database with a demo bank)
"""

import argparse
import asyncio
import os
import subprocess
import sys
import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from app.core.pagination import PageRequest
from app.managers import service, worklist
from app.managers.rule_schemas import WorklistRulesSet
from app.managers.rules import set_rules
from app.managers.schemas import ManagerCreate
from bench.harness import ROOT, scratch_database

RULES = {
    "care": {"days_before": 7, "holiday_days_before": 30},
    "complaint_sla": {"days": 5},
    "near_miss": {"share": "0.10"},
    "gone_quiet": {"valuable_tiers": ["private", "wealth", "gold"]},
}
PORTFOLIOS = (("BENCH-S", 200), ("BENCH-L", 2000))


async def measure(dsn: str, rounds: int) -> list[tuple[str, int, float, float, int]]:
    engine = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session:
        await session.execute(text("DELETE FROM relationship_manager"))
        for manager_id, capacity in PORTFOLIOS:
            body = {"policy_key": "wealth", "tiers": ["private", "wealth", "gold"]}
            await service.create_manager(
                session,
                ManagerCreate(manager_id=manager_id, name="Bench", team="bench", serves=body, capacity=capacity),
            )
        await set_rules(session, WorklistRulesSet.model_validate(RULES))
        await service.run_assignment(session, "bench")
        await session.commit()
    out = []
    for _ in range(rounds):
        for manager_id, _ in PORTFOLIOS:  # side by side, round by round
            async with sessions() as session:
                start = time.perf_counter()
                await worklist.worklist(session, manager_id, PageRequest(after=None, limit=50))
                first = time.perf_counter() - start
                start = time.perf_counter()
                await worklist.worklist(session, manager_id, PageRequest(after=None, limit=50))
                second = time.perf_counter() - start
                tasks = await session.scalar(text("SELECT count(*) FROM manager_task"))
                await session.rollback()  # the next round generates them again
            load = await _load(sessions, manager_id)
            out.append((manager_id, load, first, second, tasks))
    await engine.dispose()
    return out


async def _load(sessions, manager_id: str) -> int:
    async with sessions() as session:
        return await session.scalar(
            text(
                "SELECT count(*) FROM manager_assignment a JOIN relationship_manager m ON m.id = a.manager_id "
                "WHERE m.manager_id = :m"
            ),
            {"m": manager_id},
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with scratch_database() as dsn:
        subprocess.run(
            [sys.executable, "-m", "app.cli", "demo", "--customers", str(args.customers)],
            env={**os.environ, "TIERWISE_DATABASE_URL": dsn},
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        rows = asyncio.run(measure(dsn, args.rounds))
    by: dict[str, list] = {}
    for manager_id, load, first, second, tasks in rows:
        by.setdefault(manager_id, []).append((load, first, second, tasks))
        print(
            f"{manager_id}: {load} customers, first {first * 1000:.0f} ms, next {second * 1000:.0f} ms, {tasks} tasks"
        )
    per = {}
    for manager_id, runs in by.items():
        load = runs[0][0]
        first = sorted(r[1] for r in runs)[len(runs) // 2]
        second = sorted(r[2] for r in runs)[len(runs) // 2]
        per[manager_id] = first / load
        print(
            f"{manager_id} median: first {first * 1000:.0f} ms ({first / load * 1e6:.0f} us per customer), "
            f"next {second * 1000:.0f} ms (next/first {second / first:.3f})"
        )
    print(f"per-customer cost, 2,000 / 200: {per['BENCH-L'] / per['BENCH-S']:.3f}")


if __name__ == "__main__":
    main()
