"""Jobs an instance runs on a schedule (the recommender's statistics and offer states), each in a task of its own."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from app.core.metrics import JOB_LAST_SUCCESS

log = logging.getLogger(__name__)


def job_name(done: str) -> str:
    """The job's label in the metrics: its log message as a name ("offer states refreshed": offer_states_refreshed)."""
    return "_".join(done.lower().split())


async def run_every(minutes: int, job: Callable[[], Awaitable[dict]], done: str) -> None:
    """Run `job` every `minutes` until cancelled; log `done` with the counts it returns. A failed round is logged
    and the next one tries again: the loop never dies."""
    while True:
        await asyncio.sleep(minutes * 60)
        try:
            log.info(done, extra=await job())
            JOB_LAST_SUCCESS.labels(job_name(done)).set(time.time())
        except Exception:
            log.exception("%s: failed", done)
