"""Benefit reads: a customer's state in one driver read (their tiers with the facts behind them, this year's uses,
the catalogue's version), the catalogue kept per process, and the catalogue as a session sees it."""

import json
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.benefits.models import Benefit
from app.core.db import driver_connection
from app.customers.errors import CustomerNotFound
from app.customers.models import Customer
from app.tiering.assignment.compile import CompiledVersion, cached_explainer, explainer


@dataclass
class Held:
    """A tier the customer holds under a policy, with the compiled version that explains it."""

    policy: str
    tier: str
    rank: int
    qualified: str
    lower_since: datetime | None
    override: bool
    facts: list[Any]
    compiled: CompiledVersion


async def customer_id_of(session: AsyncSession, external_id: str) -> int:
    customer_id = await session.scalar(
        select(Customer.id).where(Customer.external_id == external_id, Customer.erased_at.is_(None))
    )
    if customer_id is None:
        raise CustomerNotFound(external_id)
    return customer_id


# One read on the driver (the hot path of GET .../benefits): the customer, the tiers they hold with the facts behind
# them, their uses this year (every current period starts in it) and the catalogue's version.
_CUSTOMER_STATE = """
SELECT c.id AS customer_id, p.key, a.version_id, v.updated_at AS version_updated_at, effective_tier(a) AS tier,
       effective_rank(a) AS rank, a.qualified_code, a.lower_since, tier_override_applies(a) AS override,
       a.facts::text AS facts,
       (SELECT coalesce(jsonb_agg(jsonb_build_array(u.benefit_id, u.period_start, u.used)), '[]')::text
        FROM benefit_usage u WHERE u.customer_id = c.id
          AND u.period_start >= date_trunc('year', now() AT TIME ZONE 'UTC')::date) AS usage,
       (SELECT coalesce(string_agg(b.id || ':' || b.xmin, ',' ORDER BY b.id), '') FROM benefit b) AS catalogue_version
FROM customer c
LEFT JOIN tier_assignment a ON a.customer_id = c.id
LEFT JOIN tier_policy p ON p.id = a.policy_id
LEFT JOIN tier_policy_version v ON v.id = a.version_id
WHERE c.external_id = $1 AND c.erased_at IS NULL
ORDER BY p.key
"""


@dataclass(frozen=True)
class BenefitData:
    """A benefit of the catalogue as this process holds it (the Benefit row's fields)."""

    id: int
    code: str
    kind: str
    applies_to: str | None
    value: Decimal | None
    unit: str
    usage_limit: int | None
    usage_period: str | None
    channels: list[str]
    valid_from: datetime | None
    valid_to: datetime | None
    texts: dict[str, Any]
    attachments: list[dict[str, Any]]
    is_active: bool


_catalogue: tuple[str, list[BenefitData]] = ("", [])


@dataclass
class CustomerState:
    customer_id: int
    held: list[Held]
    usage: dict[tuple[int, date], int]  # (benefit id, period start) -> used
    catalogue_version: str


async def customer_state(connection, sessionmaker, external_id: str) -> CustomerState:
    """The customer's id, the tiers they hold, their uses this year and the catalogue's version, in one read on a
    driver connection (a version not compiled yet in this process is read in a session of `sessionmaker`); 404
    when there is no such customer."""
    rows = await connection.fetch(_CUSTOMER_STATE, external_id)
    if not rows:
        raise CustomerNotFound(external_id)
    held = []
    for row in rows:
        if row["version_id"] is None:
            continue
        compiled = cached_explainer(row["version_id"], row["version_updated_at"])
        if compiled is None:
            async with sessionmaker() as session:
                compiled = await explainer(session, row["version_id"], row["version_updated_at"])
        held.append(
            Held(
                policy=row["key"],
                tier=row["tier"],
                rank=row["rank"],
                qualified=row["qualified_code"],
                lower_since=row["lower_since"],
                override=row["override"],
                facts=json.loads(row["facts"]),
                compiled=compiled,
            )
        )
    usage = {(benefit_id, date.fromisoformat(start)): used for benefit_id, start, used in json.loads(rows[0]["usage"])}
    return CustomerState(rows[0]["customer_id"], held, usage, rows[0]["catalogue_version"])


async def held_tiers(session: AsyncSession, external_id: str) -> tuple[int, list[Held]]:
    """The customer's id and the tiers they hold as the session sees them; 404 when there is no such customer."""
    state = await customer_state(await driver_connection(session), lambda: nullcontext(session), external_id)
    return state.customer_id, state.held


def is_in_force(benefit: Any, now: datetime) -> bool:
    return (
        benefit.is_active
        and (benefit.valid_from is None or benefit.valid_from <= now)
        and (benefit.valid_to is None or benefit.valid_to > now)
    )


_CATALOGUE = """
SELECT id, code, kind, applies_to, value, unit, usage_limit, usage_period, channels, valid_from, valid_to,
       texts::text AS texts, attachments::text AS attachments, is_active
FROM benefit ORDER BY code
"""


async def catalogue(connection, version: str) -> list[BenefitData]:
    """Every benefit, as read when the catalogue had `version` (kept in this process until the version moves:
    each row's id and the transaction that last wrote it (xmin: never reused, not even after a rollback), so any
    write, committed or seen uncommitted by its own transaction, moves it)."""
    global _catalogue
    if _catalogue[0] != version:
        benefits = []
        for row in await connection.fetch(_CATALOGUE):
            fields = dict(row)
            fields["texts"], fields["attachments"] = json.loads(row["texts"]), json.loads(row["attachments"])
            benefits.append(BenefitData(**fields))
        _catalogue = (version, benefits)
    return _catalogue[1]


async def active_benefits(session: AsyncSession, now: datetime, code: str | None = None) -> list[Benefit]:
    """Benefits in force now (active, inside their validity window), by code; only `code`'s when given."""
    query = select(Benefit).where(
        Benefit.is_active.is_(True),
        sa.or_(Benefit.valid_from.is_(None), Benefit.valid_from <= now),
        sa.or_(Benefit.valid_to.is_(None), Benefit.valid_to > now),
    )
    if code is not None:
        query = query.where(Benefit.code == code)
    return list((await session.scalars(query.order_by(Benefit.code))).all())
