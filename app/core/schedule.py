"""Jobs an instance runs on a schedule (the recommender's statistics and offer states), each in a task of its own."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def run_every(minutes: int, job: Callable[[], Awaitable[dict]], done: str) -> None:
    """Run `job` every `minutes` until cancelled; log `done` with the counts it returns. A failed round is logged
    and the next one tries again: the loop never dies."""
    while True:
        await asyncio.sleep(minutes * 60)
        try:
            log.info(done, extra=await job())
        except Exception:
            log.exception("%s: failed", done)
