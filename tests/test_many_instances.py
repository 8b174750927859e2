"""Many workers and instances on one database: one leader runs the scheduled jobs and another takes over when its
connection dies (app/core/leader.py); a revocation made through one instance is refused by another at once, told by
LISTEN/NOTIFY (app/core/invalidation.py). Each leader, listener and app here has connections of its own, as
separate processes would."""

import asyncio
import signal
import sys
import time
import uuid

import asyncpg
import httpx
import pytest

from app.apikeys import service as apikeys_service
from app.core import invalidation
from app.core.db import create_sessionmaker
from app.core.leader import Leadership, database_dsn
from app.core.schedule import run_every
from app.main import create_app

INTERVAL = 0.2  # the leaders' interval here: a dead leader is replaced within it (plus a connect)


async def _until(condition, seconds: float, what: str) -> float:
    """Wait until condition() holds; the seconds it took. Fails past `seconds`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"{what} not within {seconds} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def _terminate(dsn: str, pid: int) -> None:
    """End a backend as the server does when its client dies."""
    admin = await asyncpg.connect(dsn)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


def _lock() -> tuple[int, int]:
    """A lock of the leader's namespace of this test's own (other tests' apps lead with (7314, 1))."""
    return (7314, 1000 + uuid.uuid4().int % 1_000_000)


async def test_one_of_two_leads_and_the_other_takes_over_when_its_connection_dies(database_url):
    dsn, lock = database_dsn(database_url), _lock()
    first, second = Leadership(dsn, INTERVAL, lock), Leadership(dsn, INTERVAL, lock)
    tasks = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]
    try:
        await _until(lambda: first.is_leader or second.is_leader, 5, "a leader")
        await asyncio.sleep(3 * INTERVAL)  # both have tried several times by now
        assert [first.is_leader, second.is_leader].count(True) == 1
        leader, follower = (first, second) if first.is_leader else (second, first)

        await _terminate(dsn, leader.connection.get_server_pid())
        took = await _until(lambda: follower.is_leader, 5, "the takeover")
        assert took < 2 * INTERVAL + 1.0  # the interval, a connect and the check
        await _until(lambda: not leader.is_leader, 5, "the old leader stepping down")
        await asyncio.sleep(3 * INTERVAL)  # the old leader reconnects and tries again: it does not lead
        assert follower.is_leader and not leader.is_leader
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_two_schedulers_run_a_job_once_and_a_cancelled_leader_hands_it_over(database_url):
    """Two processes' schedules of the same job: only the leader's rounds run; when the leader stops (its lock's
    connection closed), the other's rounds run."""
    dsn, lock = database_dsn(database_url), _lock()
    rounds = {"first": 0, "second": 0}

    def job(name: str):
        async def one_round() -> dict:
            rounds[name] += 1
            return {}

        return one_round

    leaders = {name: Leadership(dsn, INTERVAL, lock) for name in rounds}
    leading = {name: asyncio.create_task(leader.run()) for name, leader in leaders.items()}
    every = 0.05 / 60  # a round every 50 ms
    jobs = [asyncio.create_task(run_every(every, job(name), "test round", leaders[name])) for name in rounds]
    try:
        await _until(lambda: any(leader.is_leader for leader in leaders.values()), 5, "a leader")
        await asyncio.sleep(0.5)
        leader = next(name for name, each in leaders.items() if each.is_leader)
        follower = next(name for name in rounds if name != leader)
        # a round every 50 ms: three of the leader's (waited for: a loaded machine runs them late), none of the other's
        await _until(lambda: rounds[leader] >= 3, 10, "the leader's rounds")
        assert rounds[follower] == 0, rounds

        leading[leader].cancel()  # the leader goes away: its connection closes, the lock with it
        await asyncio.gather(leading[leader], return_exceptions=True)
        await _until(lambda: leaders[follower].is_leader, 2 * INTERVAL + 1.0, "the takeover")
        before = dict(rounds)
        await asyncio.sleep(0.5)
        await _until(lambda: rounds[follower] >= before[follower] + 3, 10, "the new leader's rounds")
        assert rounds[leader] == before[leader], rounds
    finally:
        for task in [*leading.values(), *jobs]:
            task.cancel()
        await asyncio.gather(*leading.values(), *jobs, return_exceptions=True)


async def test_a_key_revoked_through_one_instance_is_refused_by_another_at_once(engine, database_url, test_settings):
    """Two apps on their own engines (two instances), keys cached for 5 minutes: the revocation's NOTIFY, not the
    cache's age, makes the second refuse the key; also after the second's listening connection was lost."""
    tag = uuid.uuid4().hex[:8]
    async with create_sessionmaker(engine)() as session:
        _, admin_key = await apikeys_service.create_api_key(
            session, f"mi-admin-{tag}", "admin", test_settings.api_key_pepper
        )
        victims = [
            await apikeys_service.create_api_key(session, f"mi-victim{n}-{tag}", "admin", test_settings.api_key_pepper)
            for n in range(2)
        ]
        await session.commit()
    settings = test_settings.model_copy(
        update={
            "database_url": database_url,
            "api_key_cache_seconds": 300.0,
            "webhook_worker": False,
            "retier_worker": False,
        }
    )
    first, second = create_app(settings), create_app(settings)
    async with first.router.lifespan_context(first), second.router.lifespan_context(second):
        clients = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tierwise.test")
            for app in (first, second)
        ]
        async with clients[0] as through_first, clients[1] as through_second:
            listener = second.state.invalidation
            await asyncio.wait_for(listener.listening.wait(), 5)
            for number, (row, key) in enumerate(victims):
                if number == 1:  # the second instance's listener loses its connection, and listens again
                    await _terminate(database_dsn(database_url), listener.connection.get_server_pid())
                    await _until(lambda: listener.connection is None or not listener.listening.is_set(), 5, "loss")
                    await asyncio.wait_for(listener.listening.wait(), 5)
                assert (await through_second.get("/v1/api-keys?limit=1", headers={"X-API-Key": key})).status_code == 200
                assert second.state.principal_cache.entries  # cached there, for 5 minutes
                revoked = await through_first.delete(f"/v1/api-keys/{row.id}", headers={"X-API-Key": admin_key})
                assert revoked.status_code == 200, revoked.text

                async def refused(key=key) -> bool:
                    answer = await through_second.get("/v1/api-keys?limit=1", headers={"X-API-Key": key})
                    return answer.status_code == 401

                started = time.monotonic()
                while not await refused():
                    assert time.monotonic() - started < 2.0, "the other instance still accepts the revoked key"
                    await asyncio.sleep(0.02)
                still = await through_second.get("/v1/api-keys?limit=1", headers={"X-API-Key": admin_key})
                assert still.status_code == 200  # only the revoked key is refused


async def test_a_notify_reaches_the_listeners_on_commit_and_never_on_rollback(engine, database_url):
    dropped: list[str] = []
    listener = invalidation.InvalidationListener(
        database_dsn(database_url),
        {topic: (lambda topic=topic: dropped.append(topic)) for topic in invalidation.TOPICS},
    )
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.listening.wait(), 5)
        dropped.clear()  # listening drops everything once
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session:
            await invalidation.notify(session, invalidation.RANKING_STATS)
            await session.rollback()
        async with sessionmaker() as session:
            await invalidation.notify(session, invalidation.API_KEYS)
            await asyncio.sleep(0.3)
            assert dropped == []  # not before the commit
            await session.commit()
        await _until(lambda: dropped == [invalidation.API_KEYS], 2, "the notification")
        await asyncio.sleep(0.2)
        assert dropped == [invalidation.API_KEYS]  # the rolled-back one never came
        with pytest.raises(ValueError):
            async with sessionmaker() as session:
                await invalidation.notify(session, "catalogue")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


_LEADER_PROCESS = """
import asyncio, sys
from app.core.leader import Leadership

async def main():
    leader = Leadership(sys.argv[1], float(sys.argv[2]), (int(sys.argv[3]), int(sys.argv[4])))
    task = asyncio.create_task(leader.run())
    while not leader.is_leader:
        await leader.changed()
    print("leading", leader.connection.get_server_pid(), flush=True)
    await task

asyncio.run(main())
"""


async def test_a_leader_process_killed_with_sigkill_is_replaced(database_url):
    """The leader is another process, killed with SIGKILL (no cleanup, no goodbye to the server): its session ends
    as its socket closes, the lock goes with it, and this process's Leadership takes over within its interval."""
    dsn, lock = database_dsn(database_url), _lock()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _LEADER_PROCESS, dsn, str(INTERVAL), *map(str, lock), stdout=asyncio.subprocess.PIPE
    )
    follower = Leadership(dsn, INTERVAL, lock)
    task = None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode().split()
        assert line[0] == "leading", line
        backend = int(line[1])
        task = asyncio.create_task(follower.run())
        await asyncio.sleep(3 * INTERVAL)  # the follower has tried several times: the other process leads
        assert not follower.is_leader

        process.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(process.wait(), 10) == -signal.SIGKILL
        took = await _until(lambda: follower.is_leader, 10, "the takeover after SIGKILL")
        assert took < 2 * INTERVAL + 2.0
        admin = await asyncpg.connect(dsn)
        try:  # the killed process's session is gone, and the lock is held by the follower's
            assert not await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", backend)
            holder = await admin.fetchval(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND classid = $1 AND objid = $2 AND granted",
                *lock,
            )
            assert holder == follower.connection.get_server_pid()
        finally:
            await admin.close()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
