"""Bulk intake of balances and holdings: the nightly core-banking feed, over HTTP (POST /v1/holdings/import) or
from disk (`tierwise import-balances FILE`), one code path.

1. Stage (one transaction): the lines stream through validation into COPY (a temporary table), then into the
   import's staging, checked set-based against customers and products; nothing holds the whole file in memory.
   The file's digest keys the import: a file already imported is not staged again (a finished import changes
   nothing; an unfinished one resumes).
2. Merge, in chunks by customer id, each chunk one transaction (app.customers.flows.import_holdings_chunk): its
   customers locked, their holdings replaced as PUT .../holdings replaces one customer's, the balance history and
   AUM snapshots written, their offer states marked stale and their tiers evaluated again with the batch tiering
   statement over the chunk. A chunk's staged lines are deleted as it commits, so an import that stopped (a crash,
   a killed process, a lost connection) resumes where it stopped when the same file is sent again.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db import driver_connection
from app.core.errors import InvalidInput, NotFound
from app.customers import flows, import_queries
from app.customers.import_lines import RECORD_COLUMNS, LineReader, split_lines
from app.customers.locks import LOCK_SPAN
from app.customers.models import HoldingImport, HoldingImportLine

log = logging.getLogger(__name__)
CHUNK_SIZE = LOCK_SPAN  # customer ids per chunk: one span of the customer locks, as a batch tier run's chunk
API_CHUNK_SIZE = 10_000  # over HTTP, whose statements time out (db_command_timeout_s): smaller chunks
CHUNK_WORK_MEM = "64MB"
REJECTIONS_SHOWN = 1000
COPY_TIMEOUT_S = 3600  # the COPY lasts as long as the upload does: the client's pace, not a hung server's
_LOCK = import_queries.HOLD_CHUNK  # the same lock by name: a digest, an Idempotency-Key


@dataclass
class Staged:
    import_id: int
    created: bool  # False: the file (or the Idempotency-Key) was imported before; this is that import
    replayed: bool = False  # matched by its Idempotency-Key


async def stage(
    sessionmaker: async_sessionmaker,
    chunks: AsyncIterator[bytes],
    fmt: str,
    requested_by: str,
    *,
    api_key_id: int | None = None,
    idempotency_key: str | None = None,
) -> Staged:
    """Stream the file's lines into a new import's staging, in one transaction; when the same file (or the same
    Idempotency-Key of the same API key) was imported before, roll it all back and return that import instead."""
    reader = LineReader(fmt)
    async with sessionmaker() as session:
        record = HoldingImport(format=fmt, requested_by=requested_by)
        session.add(record)
        await session.flush()
        import_id = record.id
        await session.execute(import_queries.create_incoming(import_id))
        driver = await driver_connection(session)
        try:
            await driver.copy_records_to_table(
                import_queries.incoming_table(import_id),
                records=reader.records(split_lines(chunks)),
                columns=RECORD_COLUMNS,
                timeout=COPY_TIMEOUT_S,
            )
        except ValueError as exc:  # a bad CSV header (import_lines.BadHeader), or more lines than Postgres takes
            raise InvalidInput("body", str(exc)) from None
        digest = reader.digest.hexdigest()
        for name in (digest, f"key:{api_key_id}:{idempotency_key}") if idempotency_key else (digest,):
            await session.execute(_LOCK, {"name": name})
        if idempotency_key is not None:
            earlier = (
                await session.execute(
                    select(HoldingImport.id, HoldingImport.digest).where(
                        HoldingImport.api_key_id == api_key_id, HoldingImport.idempotency_key == idempotency_key
                    )
                )
            ).first()
            if earlier is not None:
                await session.rollback()
                if earlier.digest != digest:
                    raise InvalidInput(
                        "Idempotency-Key",
                        "this key was used for another file; use a new key for a new file",
                        location="header",
                    )
                return Staged(earlier.id, created=False, replayed=True)
        earlier_id = await session.scalar(select(HoldingImport.id).where(HoldingImport.digest == digest))
        if earlier_id is not None:
            await session.rollback()
            return Staged(earlier_id, created=False)
        # On the driver with the COPY's time limit: a million lines take longer than the API's statement timeout.
        # Then the planner's statistics know the staged lines, and each chunk's merge is planned for the rows it
        # reads rather than for an empty table.
        await driver.execute(import_queries.stage_incoming(import_id), timeout=COPY_TIMEOUT_S)
        await driver.execute("ANALYZE holding_import_line", timeout=COPY_TIMEOUT_S)
        counts = (await session.execute(import_queries.STAGED_COUNTS, {"import_id": import_id})).one()
        await session.execute(
            update(HoldingImport)
            .where(HoldingImport.id == import_id)
            .values(
                digest=digest,
                lines=reader.lines,
                accepted=counts.accepted,
                rejected=counts.rejected,
                customers=counts.customers,
                api_key_id=api_key_id,
                idempotency_key=idempotency_key,
            )
        )
        await session.commit()
    return Staged(import_id, created=True)


async def merge(
    sessionmaker: async_sessionmaker,
    import_id: int,
    *,
    chunk_size: int = CHUNK_SIZE,
    workers: int = 1,
    on_chunk: Callable[[HoldingImport], Awaitable[None]] | None = None,
) -> None:
    """Merge the import's pending chunks, lowest customer ids first, each in its own transaction (`workers` at a
    time, on their own connections: chunks hold disjoint customers); `on_chunk` is awaited after each commit with
    the import's progress (the CLI prints it). A chunk that fails marks the import failed (committed chunks stay,
    no new chunk starts) and its error goes on: sending the file again resumes the import."""
    async with sessionmaker() as session:
        status = await session.scalar(select(HoldingImport.status).where(HoldingImport.id == import_id))
        if status == "succeeded":
            return
        pending = list(
            (
                await session.scalars(import_queries.PENDING_CHUNKS, {"import_id": import_id, "chunk_size": chunk_size})
            ).all()
        )
        await session.execute(
            update(HoldingImport).where(HoldingImport.id == import_id).values(status="merging", error=None)
        )
        await session.commit()
    pending.reverse()  # workers pop from the end: lowest ids first
    failures: list[Exception] = []

    async def worker() -> None:
        while pending and not failures:
            chunk = pending.pop()
            try:
                await _merge_chunk(sessionmaker, import_id, chunk * chunk_size, (chunk + 1) * chunk_size - 1, on_chunk)
            except Exception as exc:
                failures.append(exc)

    await asyncio.gather(*(worker() for _ in range(max(workers, 1))))
    if failures:
        exc = failures[0]
        log.warning("holdings import stopped", extra={"import_id": import_id, "error": type(exc).__name__})
        async with sessionmaker() as session:
            await session.execute(
                update(HoldingImport)
                .where(HoldingImport.id == import_id)
                .values(status="failed", error=f"{type(exc).__name__}: send the file again to resume")
            )
            await session.commit()
        raise exc
    async with sessionmaker() as session:
        await session.execute(
            update(HoldingImport)
            .where(HoldingImport.id == import_id, HoldingImport.status == "merging")
            .values(status="succeeded", finished_at=func.now())
        )
        await session.commit()


async def _merge_chunk(sessionmaker: async_sessionmaker, import_id: int, id_from: int, id_to: int, on_chunk) -> None:
    async with sessionmaker() as session:
        await session.execute(text(f"SET LOCAL work_mem = '{CHUNK_WORK_MEM}'"))
        customers = await flows.import_holdings_chunk(session, import_id, id_from, id_to)
        await session.execute(import_queries.CHUNK_DONE, {"import_id": import_id, "customers": customers})
        await session.commit()
        if on_chunk is not None:
            await on_chunk(await session.get(HoldingImport, import_id, populate_existing=True))


async def get_import(session: AsyncSession, import_id: int) -> tuple[HoldingImport, list[dict]]:
    """The import and its first rejections, by line."""
    record = await session.get(HoldingImport, import_id, populate_existing=True)
    if record is None:
        raise NotFound(f"No holdings import {import_id}.")
    rows = (
        await session.execute(
            select(HoldingImportLine.line, HoldingImportLine.pointer, HoldingImportLine.detail)
            .where(HoldingImportLine.import_id == import_id, HoldingImportLine.detail.is_not(None))
            .order_by(HoldingImportLine.line)
            .limit(REJECTIONS_SHOWN)
        )
    ).all()
    return record, [{"line": r.line, "pointer": r.pointer, "detail": r.detail} for r in rows]
