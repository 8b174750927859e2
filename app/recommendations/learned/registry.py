"""The model registry: trained versions stored in ranker_model, one of them serving (the database enforces it),
any earlier one served again on demand (rollback); and the retrain flow the CLI and the schedule call.

Functions taking a session flush and never commit. `retrain` commits its own short transaction to store (and
perhaps serve) the new version after a long read.
"""

import asyncio
import hashlib
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import defer

from app.core import invalidation
from app.core.db import driver_connection
from app.core.errors import Conflict, NotFound
from app.recommendations.learned.models import RankerModel

if TYPE_CHECKING:  # LightGBM is imported by the functions that train or load a model, not by list/serve/rollback
    from app.recommendations.learned.model import PropensityModel
    from app.recommendations.learned.training import TrainingResult

ServePolicy = Literal["auto", "always", "never"]


class RankerModelNotFound(NotFound):
    def __init__(self, version: int) -> None:
        super().__init__(f"No ranker model version {version}.", version=version)


class NothingToRollBackTo(Conflict):
    def __init__(self) -> None:
        super().__init__("No earlier served ranker model version to roll back to.")


async def list_models(session: AsyncSession) -> list[RankerModel]:
    """Every version, newest first, without the model bytes."""
    return list(
        await session.scalars(
            select(RankerModel).options(defer(RankerModel.model)).order_by(RankerModel.version.desc())
        )
    )


async def store_model(session: AsyncSession, result: "TrainingResult", trained_by: str) -> RankerModel:
    data = result.model.to_bytes()
    row = RankerModel(
        status="candidate",
        trained_by=trained_by,
        window_from=result.window[0],
        window_until=result.window[1],
        seed=int(result.model.params["seed"]),
        features=result.model.spec.names(),
        products=list(result.model.classes),
        metrics=result.metrics,
        model=data,
        model_sha256=hashlib.sha256(data).hexdigest(),
    )
    session.add(row)
    await session.flush()
    return row


async def serve_version(session: AsyncSession, version: int) -> RankerModel:
    """Make `version` the serving one; the one serving before is retired. Serialised by a row lock on every
    version, so two concurrent calls end with one serving version (the index would refuse two anyway)."""
    await session.execute(select(RankerModel.version).with_for_update().order_by(RankerModel.version))
    row = await session.get(RankerModel, version, options=[defer(RankerModel.model)])
    if row is None:
        raise RankerModelNotFound(version)
    if row.status != "serving":
        await session.execute(update(RankerModel).where(RankerModel.status == "serving").values(status="retired"))
        await session.execute(
            update(RankerModel).where(RankerModel.version == version).values(status="serving", served_at=text("now()"))
        )
        await session.refresh(row)
        await invalidation.notify(session, invalidation.RANKING_STATS)  # every instance ranks with it on commit
    return row


async def rollback(session: AsyncSession) -> RankerModel:
    """Serve again the version that served before the current one."""
    previous = await session.scalar(
        select(RankerModel.version)
        .where(RankerModel.status == "retired")
        .order_by(RankerModel.served_at.desc().nulls_last(), RankerModel.version.desc())
        .limit(1)
    )
    if previous is None:
        raise NothingToRollBackTo()
    return await serve_version(session, previous)


_loaded: dict[int, "PropensityModel"] = {}


async def serving_model(session: AsyncSession) -> "tuple[int, PropensityModel] | None":
    """The serving version and its model (deserialised once per version per process), or None."""
    from app.recommendations.learned.model import PropensityModel

    version = await session.scalar(select(RankerModel.version).where(RankerModel.status == "serving"))
    if version is None:
        return None
    if version not in _loaded:
        data = await session.scalar(select(RankerModel.model).where(RankerModel.version == version))
        _loaded.clear()
        _loaded[version] = await asyncio.to_thread(PropensityModel.from_bytes, data)
    return version, _loaded[version]


def _better_than_serving(result: "TrainingResult", serving: "PropensityModel | None") -> bool:
    """The new model serves when none does, when the catalog or attributes changed, or when its held-out MAP@7
    is at least the serving model's on the same held-out rows."""
    from app.recommendations.learned.training import map_at_k

    if serving is None or serving.spec != result.model.spec:
        return True
    held_out = result.held_out
    theirs = map_at_k(serving.propensities(held_out.rows), held_out.labels)
    result.metrics["serving_map7_on_held_out"] = round(theirs, 4)
    return result.metrics["map7"] >= theirs


async def retrain(
    sessionmaker: async_sessionmaker,
    primary_policy: str,
    *,
    until: date | None = None,
    months: int = 12,
    seed: int = 7,
    serve: ServePolicy = "auto",
    trained_by: str = "cli",
    compiled_dir: Path | None = None,
    **options,
) -> dict:
    """Train on the `months` month pairs up to `until` (default: the last complete month with holdings reported),
    store the version,
    and serve it (auto: when it is better than the serving one). With `compiled_dir`, its boosters are compiled
    to native code there for the refresh's scoring (app/recommendations/learned/compiled.py; `compiled` in the
    result). Returns the version, whether it serves, and its metrics."""
    from app.recommendations.learned.features import add_months, feature_spec
    from app.recommendations.learned.training import TrainingOptions, train_from_database

    async with sessionmaker() as session:
        today: date = await session.scalar(text("SELECT current_date"))
        conn = await driver_connection(session)
        spec = await feature_spec(conn, primary_policy)
        if until is None:  # the last complete month with holdings reported
            last = await conn.fetchval(
                "SELECT max(as_of) FROM holding_balance WHERE as_of < $1::date", today.replace(day=1)
            )
            until = last or add_months(today.replace(day=1), -1)
        result = await train_from_database(
            conn, spec, TrainingOptions(until=until.replace(day=1), months=months, seed=seed, **options), today
        )
        await session.rollback()
    async with sessionmaker() as session:
        await session.execute(text("SELECT pg_advisory_xact_lock(7310, 21)"))  # one registration at a time
        current = await serving_model(session)
        better = await asyncio.to_thread(_better_than_serving, result, current[1] if current else None)
        row = await store_model(session, result, trained_by)
        serves = serve == "always" or (serve == "auto" and better)
        if serves:
            await serve_version(session, row.version)
        await session.commit()
    out = {
        "version": row.version,
        "serving": serves,
        "window_from": row.window_from.isoformat(),
        "window_until": row.window_until.isoformat(),
        **result.metrics,
    }
    if compiled_dir is not None:  # outside the transaction: compiling takes seconds
        out["compiled"] = await asyncio.to_thread(result.model.compile, compiled_dir, compile_missing=True)
    return out
