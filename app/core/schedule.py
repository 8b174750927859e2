"""Jobs run on a schedule (the recommender's statistics and offer states, the ranker's training, the purge), each in
a task of its own, in every process; a round runs only in the process that leads (app.core.leader), so each job
runs once across every worker and instance."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from app.core.metrics import JOB_LAST_SUCCESS

log = logging.getLogger(__name__)


def job_name(done: str) -> str:
    """The job's label in the metrics: its log message as a name ("offer states refreshed": offer_states_refreshed)."""
    return "_".join(done.lower().split())


async def run_every(minutes: float, job: Callable[[], Awaitable[dict]], done: str, leader=None) -> None:
    """Run `job` every `minutes` until cancelled; log `done` with the counts it returns. A failed round is logged
    and the next one tries again: the loop never dies. With a `leader` (app.core.leader.Leadership), a round runs
    only while this process leads; elsewhere it is skipped (the leader runs it)."""
    while True:
        await asyncio.sleep(minutes * 60)
        if leader is not None and not leader.is_leader:
            continue
        try:
            log.info(done, extra=await job())
            JOB_LAST_SUCCESS.labels(job_name(done)).set(time.time())
        except Exception:
            log.exception("%s: failed", done)
