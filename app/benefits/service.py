"""The benefit catalogue: create, read, change (each change a new revision, kept), list, deactivate; the session
is flushed, never committed."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.benefits.errors import BenefitCodeTaken, BenefitNotFound
from app.benefits.models import Benefit, BenefitRevision
from app.benefits.schemas import BenefitCreate, BenefitRead, BenefitUpdate
from app.core.db import unique_or_raise
from app.core.errors import InvalidFields, InvalidInput
from app.core.pagination import PageRequest, keyset
from app.core.patching import Patch, refusal
from app.rules import check_condition, dump_condition, load_catalog
from app.tiering.models import TierPolicy, TierPolicyVersion

DEFAULT_BENEFITS_FILE = Path(__file__).resolve().parent.parent / "defaults" / "benefits.json"


def _check_window(valid_from: datetime | None, valid_to: datetime | None, patch: Patch | None = None) -> None:
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        raise refusal(patch, "/valid_to", "must be after valid_from", reads=("valid_from", "valid_to"))


def _check_limit(limit: int | None, period: str | None, patch: Patch | None = None) -> None:
    if (limit is None) != (period is None):
        pointer = "/usage_period" if period is None else "/usage_limit"
        raise refusal(patch, pointer, "usage_limit and usage_period go together", reads=("usage_limit", "usage_period"))


async def _checked_attachments(session: AsyncSession, attachments: list) -> list[dict[str, Any]]:
    """Attachments as stored, after checking that each policy has the tier in some version and that each extra
    condition compiles (422 at /attachments/<i>/...)."""
    if not attachments:
        return []
    keys = {a.policy_key for a in attachments}
    rows = await session.execute(
        select(TierPolicy.key, TierPolicyVersion.tiers)
        .join(TierPolicyVersion, TierPolicyVersion.policy_id == TierPolicy.id)
        .where(TierPolicy.key.in_(keys))
    )
    tiers_of: dict[str, set[str]] = {}
    for key, tiers in rows:
        tiers_of.setdefault(key, set()).update(tier["code"] for tier in tiers)
    catalog = None
    stored, seen = [], set()
    for i, attachment in enumerate(attachments):
        if attachment.policy_key not in tiers_of:
            raise InvalidInput(f"/attachments/{i}/policy_key", f"no tier policy '{attachment.policy_key}'")
        if attachment.tier not in tiers_of[attachment.policy_key]:
            known = ", ".join(sorted(tiers_of[attachment.policy_key]))
            raise InvalidInput(
                f"/attachments/{i}/tier", f"policy '{attachment.policy_key}' has no tier '{attachment.tier}' ({known})"
            )
        if (attachment.policy_key, attachment.tier) in seen:
            raise InvalidInput(f"/attachments/{i}", "the same policy and tier twice")
        seen.add((attachment.policy_key, attachment.tier))
        condition = None
        if attachment.condition is not None:
            catalog = catalog or await load_catalog(session)
            check_condition(attachment.condition, catalog, f"/attachments/{i}/condition")
            condition = dump_condition(attachment.condition)
        stored.append({"policy_key": attachment.policy_key, "tier": attachment.tier, "condition": condition})
    return stored


async def find_benefit(session: AsyncSession, code: str, *, lock: bool = False) -> Benefit | None:
    query = select(Benefit).where(Benefit.code == code)
    return await session.scalar(query.with_for_update() if lock else query)


async def get_benefit(session: AsyncSession, code: str, *, lock: bool = False) -> Benefit:
    benefit = await find_benefit(session, code, lock=lock)
    if benefit is None:
        raise BenefitNotFound(code)
    return benefit


async def check_codes(session: AsyncSession, codes: list[str], pointer: str) -> None:
    """For another domain that names benefits by code (an activity's granted benefits): a 422 naming each code
    that is not in the catalogue, at `pointer`/<index>."""
    known = set((await session.scalars(select(Benefit.code).where(Benefit.code.in_(set(codes))))).all())
    unknown = [
        {"location": "body", "pointer": f"{pointer}/{i}", "detail": f"no benefit '{code}' in the catalogue"}
        for i, code in enumerate(codes)
        if code not in known
    ]
    if unknown:
        raise InvalidFields(unknown)


async def _record_revision(session: AsyncSession, benefit: Benefit, actor: str) -> BenefitRead:
    await session.flush()
    await session.refresh(benefit)
    document = BenefitRead.model_validate(benefit)
    session.add(
        BenefitRevision(
            benefit_id=benefit.id, revision=benefit.revision, document=document.model_dump(mode="json"), actor=actor
        )
    )
    await session.flush()
    return document


async def create_benefit(session: AsyncSession, fields: BenefitCreate, actor: str) -> BenefitRead:
    _check_window(fields.valid_from, fields.valid_to)
    _check_limit(fields.usage_limit, fields.usage_period)
    if await find_benefit(session, fields.code) is not None:
        raise BenefitCodeTaken(fields.code)
    values = fields.model_dump(mode="python")
    values["texts"] = {tag: text.model_dump() for tag, text in fields.texts.items()}
    values["attachments"] = await _checked_attachments(session, fields.attachments)
    benefit = Benefit(**values)
    async with unique_or_raise(session, BenefitCodeTaken(fields.code)):
        session.add(benefit)
        await session.flush()
    return await _record_revision(session, benefit, actor)


async def update_benefit(session: AsyncSession, benefit: Benefit, changes: BenefitUpdate, actor: str) -> BenefitRead:
    patch = Patch.of(benefit, changes)
    updates = patch.changes
    if not updates:
        return BenefitRead.model_validate(benefit)
    _check_window(patch["valid_from"], patch["valid_to"], patch)
    _check_limit(patch["usage_limit"], patch["usage_period"], patch)
    if "texts" in updates:
        updates["texts"] = {tag: text.model_dump() for tag, text in changes.texts.items()}
    if "attachments" in updates:
        updates["attachments"] = await _checked_attachments(session, changes.attachments)
    for name, value in updates.items():
        setattr(benefit, name, value)
    benefit.revision += 1
    benefit.updated_at = datetime.now(UTC)
    return await _record_revision(session, benefit, actor)


async def deactivate_benefit(session: AsyncSession, benefit: Benefit, actor: str) -> BenefitRead:
    if not benefit.is_active:
        return BenefitRead.model_validate(benefit)
    benefit.is_active = False
    benefit.revision += 1
    benefit.updated_at = datetime.now(UTC)
    return await _record_revision(session, benefit, actor)


async def list_benefits(
    session: AsyncSession,
    page: PageRequest,
    *,
    kind: str | None = None,
    policy_key: str | None = None,
    tier: str | None = None,
    active: bool | None = None,
) -> list[Benefit]:
    query = select(Benefit)
    if kind is not None:
        query = query.where(Benefit.kind == kind)
    if policy_key is not None or tier is not None:
        wanted = {k: v for k, v in (("policy_key", policy_key), ("tier", tier)) if v is not None}
        query = query.where(Benefit.attachments.contains([wanted]))
    if active is not None:
        query = query.where(Benefit.is_active.is_(active))
    return list((await session.scalars(keyset(query, Benefit.id, page))).all())


async def list_revisions(session: AsyncSession, benefit: Benefit, page: PageRequest) -> list[BenefitRevision]:
    query = select(BenefitRevision).where(BenefitRevision.benefit_id == benefit.id)
    return list((await session.scalars(keyset(query, BenefitRevision.id, page))).all())


def default_benefits(path: Path = DEFAULT_BENEFITS_FILE) -> list[BenefitCreate]:
    return [BenefitCreate.model_validate(item) for item in json.loads(path.read_text())["benefits"]]


async def load_default_benefits(session: AsyncSession, actor: str = "system") -> list[str]:
    """Add the shipped benefits (app/defaults/benefits.json) that are not in the catalogue yet; their codes.
    Attachments to policies that do not exist are left out."""
    existing = {key for (key,) in await session.execute(select(TierPolicy.key))}
    created = []
    for benefit in default_benefits():
        if await find_benefit(session, benefit.code) is not None:
            continue
        benefit.attachments = [a for a in benefit.attachments if a.policy_key in existing]
        await create_benefit(session, benefit, actor)
        created.append(benefit.code)
    return created
