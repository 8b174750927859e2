"""Refusals caused by another request changing the state while this one ran are 409 (412 for If-Match), never a
422 or a 500: a creation that loses the race for its key to one committed meanwhile (on two real connections, the
loser held on the key's index until the winner commits), and any database error that only a concurrent change
causes (app/core/database_errors.py)."""

import asyncio
import uuid

import pytest
from sqlalchemy import text
from starlette.requests import Request

from app.core.db import create_sessionmaker
from app.core.errors import AppError, handle_unexpected
from app.engagement import communities
from app.engagement.schemas.communities import CommunityCreate


def _body(key: str) -> CommunityCreate:
    return CommunityCreate(key=key, name="Race", owner_team="t", audience={"always": True})


async def test_two_creations_of_one_key_the_loser_gets_409_naming_the_key(engine):
    key = f"race-{uuid.uuid4().hex[:8]}"
    sessionmaker = create_sessionmaker(engine)
    try:
        async with sessionmaker() as first, sessionmaker() as second:
            await communities.create_community(first, _body(key))  # inserted, not committed: holds the key
            second_pid = await second.scalar(text("SELECT pg_backend_pid()"))
            loser = asyncio.create_task(communities.create_community(second, _body(key)))  # its check sees none
            while not await first.scalar(
                text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid"), {"pid": second_pid}
            ):
                await asyncio.sleep(0.01)
            await first.commit()
            with pytest.raises(AppError) as refused:
                await loser
            assert refused.value.status == 409 and refused.value.errors[0]["pointer"] == "/key"
    finally:
        async with sessionmaker() as cleanup:
            await cleanup.execute(text("DELETE FROM community WHERE key = :key"), {"key": key})
            await cleanup.commit()


class _DriverError(Exception):
    def __init__(self, state: str) -> None:
        super().__init__("a value the log must not quote")
        self.sqlstate = state


@pytest.mark.parametrize(
    ("state", "status"),
    [("23505", 409), ("23503", 409), ("40001", 409), ("40P01", 409), ("22021", 422), ("57P01", 503), ("42P01", 500)],
)
async def test_a_concurrent_change_is_a_409_problem(state, status):
    request = Request({"type": "http", "method": "POST", "path": "/probe", "headers": [], "query_string": b""})
    response = await handle_unexpected(request, _DriverError(state))
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
