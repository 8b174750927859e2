"""Tier policy operations: create, version, edit, activate and retire; flush, never commit (what-if and
simulation: app/tiering/simulation.py).

Tiers are stored as data (JSONB) and evaluated by the one rule compiler (app.rules): `tier_case` turns a
version's ordered tiers into one SQL CASE expression, the same for one customer and the whole population.
"""

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement, FromClause

from app.core.db import unique_or_raise
from app.core.errors import InvalidInput
from app.core.etag import matches_if_match
from app.core.pagination import PageRequest, keyset
from app.rules import (
    AttributeCatalog,
    check_condition,
    compile_condition,
    customer_features,
    dump_condition,
    load_catalog,
    parse_condition,
    referenced_attributes,
)
from app.rules.schema import AlwaysCondition
from app.tiering.errors import (
    ActivationConflict,
    IfMatchMissing,
    InvalidVersionTransition,
    StaleVersion,
    TierPolicyKeyTaken,
    TierPolicyNotFound,
    TierPolicyVersionNotFound,
    VersionNotEditable,
)
from app.tiering.models import TierPolicy, TierPolicyChange, TierPolicyVersion
from app.tiering.schemas import Tier, TierPolicyCreate, TierPolicyVersionCreate, TierPolicyVersionUpdate

DEFAULT_POLICIES_FILE = Path(__file__).resolve().parents[1] / "defaults" / "policies.json"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# ---- tiers: validation and the one CASE ------------------------------------------------------------------------


async def checked_tiers(session: AsyncSession, tiers: Sequence[Tier]) -> list[dict[str, Any]]:
    """The tiers as stored JSON, after checking every condition against the catalog, duplicate codes and
    unreachable tiers; InvalidInput (422) points at the offending node (/tiers/{i}/...)."""
    if not tiers:
        raise InvalidInput("/tiers", "a version needs at least one tier")
    catalog = await load_catalog(session)
    seen: dict[str, int] = {}
    always_at: int | None = None
    for i, tier in enumerate(tiers):
        if always_at is not None:
            raise InvalidInput(
                f"/tiers/{i}", f"can never match: tier {always_at} ('{tiers[always_at].code}') always matches first"
            )
        if tier.code in seen:
            raise InvalidInput(f"/tiers/{i}/code", f"duplicate tier code '{tier.code}' (also tier {seen[tier.code]})")
        seen[tier.code] = i
        check_condition(tier.condition, catalog, f"/tiers/{i}/condition")
        if isinstance(tier.condition, AlwaysCondition):
            always_at = i
    return [
        {
            "code": t.code,
            "label": t.label,
            **({"labels": t.labels} if t.labels else {}),  # stored only when given: older documents stay the same
            "rank": t.rank,
            "condition": dump_condition(t.condition),
        }
        for t in tiers
    ]


def tier_case(
    tiers: Sequence[Mapping[str, Any]], catalog: AttributeCatalog, features: FromClause = customer_features
) -> ColumnElement[str | None]:
    """A version's tiers (stored JSON, in order) as one SQL expression: the first matching tier's code, or NULL.

    CASE WHEN <tier 0 condition> THEN 'code0' WHEN <tier 1 condition> THEN 'code1' ... END, over `features`
    (customer_features, an alias, or a what-if subquery). Reused by simulation and by batch assignment.
    """
    whens = [
        (
            compile_condition(parse_condition(tier["condition"], f"/tiers/{i}/condition"), catalog, features),
            sa.literal(tier["code"], sa.Text()),
        )
        for i, tier in enumerate(tiers)
    ]
    return sa.case(*whens, else_=sa.null()).cast(sa.Text())


# ---- reads -----------------------------------------------------------------------------------------------------


def etag_of(version: TierPolicyVersion) -> str:
    micros = (version.updated_at - _EPOCH) // timedelta(microseconds=1)
    return f'"{version.id}-{micros}"'  # strong: equal tags mean the same content (it changes on every edit)


async def find_policy(session: AsyncSession, key: str, *, for_update: bool = False) -> TierPolicy | None:
    query = select(TierPolicy).where(TierPolicy.key == key)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def get_policy(session: AsyncSession, key: str, *, for_update: bool = False) -> TierPolicy:
    policy = await find_policy(session, key, for_update=for_update)
    if policy is None:
        raise TierPolicyNotFound(key)
    return policy


async def list_versions(session: AsyncSession, policy: TierPolicy) -> list[TierPolicyVersion]:
    query = (
        select(TierPolicyVersion).where(TierPolicyVersion.policy_id == policy.id).order_by(TierPolicyVersion.version)
    )
    return list((await session.scalars(query)).all())


async def versions_reading_attribute(session: AsyncSession, name: str) -> list[str]:
    """The draft and active versions ("key vN") whose conditions read the attribute: its type must not change
    under them (a retired version is checked again if it is ever activated)."""
    rows = await session.execute(
        select(TierPolicy.key, TierPolicyVersion.version, TierPolicyVersion.tiers)
        .join(TierPolicy, TierPolicy.id == TierPolicyVersion.policy_id)
        .where(TierPolicyVersion.status != "retired")
        .order_by(TierPolicy.key, TierPolicyVersion.version)
    )
    return [
        f"tier policy {key} v{version}"
        for key, version, tiers in rows
        if any(
            name in referenced_attributes(parse_condition(tier["condition"]))
            for tier in tiers
            if tier.get("condition") is not None
        )
    ]


async def get_version(session: AsyncSession, policy: TierPolicy, version: int) -> TierPolicyVersion:
    found = await session.scalar(
        select(TierPolicyVersion).where(TierPolicyVersion.policy_id == policy.id, TierPolicyVersion.version == version)
    )
    if found is None:
        raise TierPolicyVersionNotFound(policy.key, version)
    return found


async def active_version(session: AsyncSession, policy: TierPolicy) -> TierPolicyVersion | None:
    return await session.scalar(
        select(TierPolicyVersion).where(TierPolicyVersion.policy_id == policy.id, TierPolicyVersion.status == "active")
    )


async def list_policies(session: AsyncSession, page: PageRequest) -> list[tuple[TierPolicy, int | None, int]]:
    """A page of policies in creation order (limit + 1), each with its active version number (or None) and its
    latest version number."""
    active = func.max(TierPolicyVersion.version).filter(TierPolicyVersion.status == "active")
    query = (
        select(TierPolicy, active, func.max(TierPolicyVersion.version))
        .join(TierPolicyVersion, TierPolicyVersion.policy_id == TierPolicy.id)
        .group_by(TierPolicy.id)
    )
    rows = await session.execute(keyset(query, TierPolicy.id, page))
    return [(policy, active_no, latest) for policy, active_no, latest in rows.all()]


async def list_changes(session: AsyncSession, policy: TierPolicy, page: PageRequest) -> list[TierPolicyChange]:
    """A page of the policy's changes, oldest first (limit + 1)."""
    query = select(TierPolicyChange).where(TierPolicyChange.policy_id == policy.id)
    return list((await session.scalars(keyset(query, TierPolicyChange.id, page))).all())


# ---- writes ----------------------------------------------------------------------------------------------------


def _record(
    session: AsyncSession,
    policy: TierPolicy,
    version: int | None,
    action: str,
    actor: str,
    detail: dict[str, Any] | None = None,
) -> None:
    session.add(
        TierPolicyChange(
            policy_id=policy.id, version=version, action=action, actor=actor, at=datetime.now(UTC), detail=detail or {}
        )
    )


def _content(version: TierPolicyVersion) -> dict[str, Any]:
    return {
        "tiers": version.tiers,
        "downgrade_grace_days": version.downgrade_grace_days,
        "description": version.description,
    }


async def create_policy(
    session: AsyncSession, body: TierPolicyCreate, actor: str
) -> tuple[TierPolicy, TierPolicyVersion]:
    """A new policy with draft version 1; 409 if the key exists."""
    tiers = await checked_tiers(session, body.tiers)
    if await find_policy(session, body.policy_key) is not None:
        raise TierPolicyKeyTaken(body.policy_key)
    now = datetime.now(UTC)
    policy = TierPolicy(key=body.policy_key, name=body.name, description=body.description, created_at=now)
    async with unique_or_raise(session, TierPolicyKeyTaken(body.policy_key)):
        session.add(policy)
        await session.flush()
    version = TierPolicyVersion(
        policy_id=policy.id,
        version=1,
        status="draft",
        tiers=tiers,
        downgrade_grace_days=body.downgrade_grace_days,
        description=body.version_description,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    session.add(version)
    _record(session, policy, 1, "create", actor, {"after": _content(version)})
    await session.flush()
    return policy, version


async def add_version(
    session: AsyncSession, key: str, body: TierPolicyVersionCreate, actor: str
) -> tuple[TierPolicy, TierPolicyVersion]:
    """A new draft, numbered after the latest version; its content given or copied from `copy_from`."""
    policy = await get_policy(session, key, for_update=True)  # serialises version numbering
    source = await get_version(session, policy, body.copy_from) if body.copy_from is not None else None
    if body.tiers is not None:
        tiers = await checked_tiers(session, body.tiers)
    else:
        assert source is not None
        tiers = source.tiers
    grace = body.downgrade_grace_days
    if grace is None:
        grace = source.downgrade_grace_days if source is not None else 0
    latest = (
        await session.scalar(
            select(func.max(TierPolicyVersion.version)).where(TierPolicyVersion.policy_id == policy.id)
        )
        or 0
    )
    now = datetime.now(UTC)
    version = TierPolicyVersion(
        policy_id=policy.id,
        version=latest + 1,
        status="draft",
        tiers=tiers,
        downgrade_grace_days=grace,
        description=body.description,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    session.add(version)
    detail = {"after": _content(version)}
    if source is not None:
        detail["copied_from"] = source.version
    _record(session, policy, version.version, "add_version", actor, detail)
    await session.flush()
    return policy, version


async def edit_version(
    session: AsyncSession, key: str, number: int, body: TierPolicyVersionUpdate, if_match: str | None, actor: str
) -> tuple[TierPolicy, TierPolicyVersion]:
    """Replace a draft's content; requires If-Match with its current ETag (428 without, 412 when stale)."""
    policy = await get_policy(session, key)
    version = await get_version(session, policy, number)
    if version.status != "draft":
        raise VersionNotEditable(key, number, version.status)
    if if_match is None:
        raise IfMatchMissing()
    current = etag_of(version)
    if not matches_if_match(if_match, current):
        raise StaleVersion(current)
    tiers = await checked_tiers(session, body.tiers)
    before = _content(version)
    version.tiers = tiers
    version.downgrade_grace_days = body.downgrade_grace_days
    version.description = body.description
    version.updated_at = datetime.now(UTC)
    _record(session, policy, number, "edit", actor, {"before": before, "after": _content(version)})
    await session.flush()
    return policy, version


async def activate_version(
    session: AsyncSession, key: str, number: int, actor: str
) -> tuple[TierPolicy, TierPolicyVersion]:
    """Make a draft or retired version the active one, retiring the current active version, in one transaction.

    Activating an older version than the active one is recorded as a rollback. The policy row is locked first
    so activations serialise; the partial unique index is the last word, and losing to it is a 409.
    """
    policy = await get_policy(session, key, for_update=True)
    version = await get_version(session, policy, number)
    if version.status == "active":
        return policy, version  # already active: nothing to do
    current = await active_version(session, policy)
    now = datetime.now(UTC)
    async with unique_or_raise(session, ActivationConflict(key)):
        if current is not None:
            current.status, current.retired_at, current.updated_at = "retired", now, now
            await session.flush()  # retire first: the index allows one active row at every moment
        version.status, version.activated_at, version.retired_at, version.updated_at = "active", now, None, now
        await session.flush()
    action = "rollback" if current is not None and number < current.version else "activate"
    _record(
        session,
        policy,
        number,
        action,
        actor,
        {"before": {"active_version": current.version if current else None}, "after": {"active_version": number}},
    )
    await session.flush()
    return policy, version


async def retire_version(
    session: AsyncSession, key: str, number: int, actor: str
) -> tuple[TierPolicy, TierPolicyVersion]:
    """Retire an active version (the policy then has none active) or discard a draft; retired again is a 409."""
    policy = await get_policy(session, key, for_update=True)
    version = await get_version(session, policy, number)
    if version.status == "retired":
        raise InvalidVersionTransition(key, number, version.status, "retired")
    before = version.status
    now = datetime.now(UTC)
    version.status, version.retired_at, version.updated_at = "retired", now, now
    _record(session, policy, number, "retire", actor, {"before": {"status": before}, "after": {"status": "retired"}})
    await session.flush()
    return policy, version


# ---- defaults --------------------------------------------------------------------------------------------------


def default_policies(path: Path = DEFAULT_POLICIES_FILE) -> list[TierPolicyCreate]:
    """The shipped default policies (app/defaults/policies.json), validated as create bodies."""
    return [TierPolicyCreate.model_validate(item) for item in json.loads(path.read_text())["policies"]]


async def load_default_policies(session: AsyncSession, actor: str = "system") -> list[str]:
    """Create every missing default policy and activate its version 1; idempotent. Returns the keys created."""
    created = []
    for body in default_policies():
        if await find_policy(session, body.policy_key) is not None:
            continue
        await create_policy(session, body, actor)
        await activate_version(session, body.policy_key, 1, actor)
        created.append(body.policy_key)
    return created
