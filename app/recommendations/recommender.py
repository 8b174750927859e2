"""Next-best-product: candidates filtered in SQL (eligibility through the one compiler, suitability, holdings,
consent, contact policy), ranked by propensity x value x lever (app/recommendations/ranking.py), each with its
reasons; served lists are stored (app/recommendations/served.py).

A request is one prepared statement on a driver connection: the customer's offer state (app/recommendations/
offer_state.py), with the contact policy's outcome stored with it, and the candidates (with explain, every product
with the first filter that removes it). When the stored contact outcome does not hold (a write to what the policy
counts cleared it, or time ended it), a second statement counts it and stores it with the state. When no
state holds, a second statement computes it (the customer's features and every product's eligibility), stores it
and gives the candidates (app/recommendations/catalog.py compiles both). Then comes the request's share of one
insert of served lists (`ServedLists`: concurrent requests' lists are committed together, awaited by a hot read once
its connection is back in the pool). The population-wide statistics that rank (app/recommendations/ranking_stats.py:
a few hundred rows, refreshed by a job or by feedback) are read once per `ranking_stats_seconds` per instance, not
per request.
"""

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.db import driver_connection
from app.core.serializers import document_serializer
from app.customers.errors import CustomerNotFound
from app.recommendations import offer_state
from app.recommendations.catalog import CatalogSnapshot, build_snapshot
from app.recommendations.fallback import served_fallback
from app.recommendations.ranking import RecommendationResult, in_holdout, rank
from app.recommendations.ranking_stats import RankingStats, refresh_stats
from app.recommendations.schemas import RecommendationsRead
from app.recommendations.served import ServedLists


class Recommender:
    """One instance's recommender: the compiled catalog and the ranking statistics, each kept until it changes
    (the catalog's version is read with every customer) or ages (`ranking_stats_seconds`; feedback taken by this
    instance and a statistics refresh drop them at once).

    sessionmaker: a zero-argument callable returning an async context manager of a session, used to compile the
    catalog when it has changed; connect: the same for a connection of the hot path's pool
    (app.core.db.read_connection), on which its requests' served lists are written, grouped (app/recommendations/
    served.py)."""

    def __init__(
        self,
        settings: Settings,
        sessionmaker: Callable[[], AbstractAsyncContextManager[AsyncSession]],
        connect: Callable[[], AbstractAsyncContextManager] | None = None,
    ) -> None:
        self.settings = settings
        self._sessionmaker = sessionmaker
        self._snapshot: CatalogSnapshot | None = None
        self._stats: RankingStats | None = None
        self._stats_expire_at = 0.0
        self.served = ServedLists(connect)

    def invalidate_stats(self) -> None:
        self._stats = None

    async def refresh_statistics(self) -> dict[str, int]:
        """Recompute popularity and co-holding (app.recommendations.ranking_stats), and read them from now on."""
        async with self._sessionmaker() as session:
            counts = await refresh_stats(session, self.settings.primary_policy)
            await session.commit()
        self.invalidate_stats()
        return counts

    async def refresh_offer_states(self, *, everyone: bool = False, chunk: int = 5000) -> dict[str, int]:
        """Compute again, set-based, the offer states that no longer hold of customers who ask for recommendations
        (after midnight, after writes), or with `everyone` of every customer; `chunk` customers per statement and
        transaction. Writes meanwhile are safe: a state is stored only at the generation it read. With a learned
        ranker model serving, each chunk's states are scored in bulk once stored, the model running on one chunk
        while Postgres computes the next one's states, and then every other holding state it has not scored; the
        propensities are stored with the state (app/recommendations/learned/serving.py; `offer_states_scored` in
        the counts)."""
        snapshot = await self._catalog()
        pipeline = None
        if await self._model_serving():
            from app.recommendations.learned import serving  # LightGBM only where a model serves
            from app.recommendations.learned.compiled import cache_dir

            scorer = await serving.serving_scorer(self._sessionmaker, cache_dir(self.settings))
            pipeline = serving.ScoringPipeline(scorer, self._sessionmaker) if scorer is not None else None
        stored, after = 0, 0
        try:
            while True:
                async with self._sessionmaker() as session:
                    ids = await offer_state.not_holding(session, after=after, limit=chunk, everyone=everyone)
                    if not ids:
                        break
                    # the chunk's features read on another connection while this one computes the states
                    features = await pipeline.prefetch(ids) if pipeline is not None else None
                    conn = await driver_connection(session)
                    if pipeline is None:
                        status = await conn.execute(*snapshot.refreshing.arguments(ids=ids))
                        stored += int(status.rsplit(" ", 1)[1])
                    else:  # the states stored, with their candidates among the model's products
                        states = await conn.fetch(
                            *snapshot.refreshing_for_ranker.arguments(
                                ids=ids, model_products=pipeline.scorer.model.classes
                            )
                        )
                        stored += len(states)
                    await session.commit()
                after = ids[-1]
                if pipeline is not None:
                    await pipeline.add_stored(states, await features)
            counts = {"offer_states_stored": stored}
            if pipeline is not None:
                await pipeline.drain()
                rest = await serving.score_states(self._sessionmaker, chunk=chunk, scorer=pipeline.scorer)
                counts["offer_states_scored"] = pipeline.scored + rest
                self.invalidate_stats()
        finally:
            if pipeline is not None:
                pipeline.cancel()
        return counts

    async def _model_serving(self) -> bool:
        async with self._sessionmaker() as session:
            return await session.scalar(text("SELECT EXISTS (SELECT 1 FROM ranker_model WHERE status = 'serving')"))

    async def _catalog(self) -> CatalogSnapshot:
        async with self._sessionmaker() as session:
            self._snapshot = await build_snapshot(session)
        return self._snapshot

    async def _customer_row(
        self, connection, snapshot: CatalogSnapshot, statement, external_id: str, arguments: dict[str, Any]
    ):
        """(snapshot, row) of one of the snapshot's statements (`statement`: CatalogSnapshot.state_query or
        .query); when the row shows that the catalog changed, the catalog is compiled again and the statement rerun."""
        row = await connection.fetchrow(*statement(snapshot, external_id, **arguments))
        if row is not None and row["catalog_version"] != snapshot.version:
            snapshot = await self._catalog()
            row = await connection.fetchrow(*statement(snapshot, external_id, **arguments))
        return snapshot, row

    async def _ranking_stats(self, connection) -> RankingStats:
        stats = self._stats
        if stats is None or time.monotonic() >= self._stats_expire_at:
            stats = await RankingStats.load(connection)
            self._stats, self._stats_expire_at = stats, time.monotonic() + self.settings.ranking_stats_seconds
        return stats

    async def recommend(
        self,
        connection,
        external_id: str,
        *,
        channel: str,
        limit: int,
        exclude: list[str] = (),
        explain: bool = False,
        seed: int | None = None,
        explore: bool = True,
        now: datetime | None = None,
        record: bool = True,
        strategy: str | None = None,
        language: str | None = None,
    ) -> "RecommendationResult":
        """Rank the products a customer may be offered now on `channel`, on `connection` (an asyncpg connection:
        the request's transaction, or a pool connection of its own); store the served list when `record`. The
        reasons are worded in `language` (default: the configured one)."""
        settings = self.settings
        snapshot = self._snapshot or await self._catalog()
        now = now or datetime.now().astimezone()
        arguments = dict(
            primary_policy=settings.primary_policy,
            channel=channel,
            exclude=list(exclude),
            now=now,
            winback_days=settings.winback_days,
            explain=explain,
        )
        snapshot, row = await self._customer_row(
            connection, snapshot, CatalogSnapshot.state_query, external_id, arguments
        )
        if row is not None and not row["contact_known"]:  # the contact outcome counted, and stored with the state
            snapshot, row = await self._customer_row(
                connection, snapshot, CatalogSnapshot.contact_query, external_id, arguments
            )
        if row is not None:
            offer_state.READ.inc()
        else:  # no state holds (or there is no such customer): compute it and store it, for the next request too
            snapshot, row = await self._customer_row(
                connection, snapshot, CatalogSnapshot.query, external_id, arguments
            )
            if row is None:
                raise CustomerNotFound(external_id)
            offer_state.COMPUTED.inc()
        explanation = snapshot.explanation(row["explanation"])
        stats = await self._ranking_stats(connection)

        strategy = strategy or (
            "holdout_popularity" if in_holdout(row["external_id"], settings.holdout_share) else "personalised"
        )
        result = rank(
            row,
            snapshot,
            explanation,
            stats,
            settings,
            strategy=strategy,
            seed=seed,
            explore=explore,
            limit=limit,
            explain=explain,
            language=language,
        )
        if record and result.items:
            if connection.is_in_transaction():
                await self.served.write(connection, result, channel)
            else:  # the hot path's pool: grouped, awaited once the connection is back (app/core/hotpath.py)
                result.stored = self.served.submit(result, channel)
        elif not result.items:  # every product filtered out: the fallback message, when it is on
            result.fallback = served_fallback(
                row["fallback"], language or settings.default_language, settings.default_language
            )
        return result


RECOMMENDATIONS_JSON = document_serializer(RecommendationsRead)


def recommendations_json(result: RecommendationResult, explain: bool) -> bytes:
    """The RecommendationsRead document of a served list (`filtered_out` only when explaining, `fallback` only when
    one is served)."""
    document = {
        "customer_id": result.external_id,
        "tier": result.tier,
        "strategy": result.strategy,
        "items": [
            {
                "recommendation_id": rid,
                "rank": rank,
                "product": {
                    "product_code": item.product.code,
                    "name": item.product.name,
                    "category": item.product.category,
                    "risk_level": item.product.risk_level,
                },
                "score": round(item.score, 6),
                "score_parts": {"propensity": round(item.propensity, 6), "value": item.value, "lever": item.lever},
                "reasons": item.reasons,
            }
            for rank, (rid, item) in enumerate(zip(result.recommendation_ids, result.items, strict=True), 1)
        ],
    }
    if explain:
        document["filtered_out"] = result.filtered
    if result.fallback is not None:
        document["fallback"] = result.fallback
    return RECOMMENDATIONS_JSON.to_json(document)
