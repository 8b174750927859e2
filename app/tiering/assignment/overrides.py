"""Tier overrides: a relationship manager pins a customer's tier under a policy, until it expires or is removed;
each change of the tier the customer has lands in the feed."""

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.tiering.assignment.compile import explainer
from app.tiering.models import TierAssignment, TierPolicy, TierPolicyVersion, TierTransition


async def set_override(session: AsyncSession, customer_id: int, policy: TierPolicy, tier_code: str, reason: str,
                       expires_at: datetime | None, actor: str) -> None:
    """Pin a customer's tier under a policy (a relationship manager's decision), until it expires or is removed."""
    from app.core.errors import InvalidInput
    from app.tiering.errors import NoTierAssignment

    assignment = await session.get(TierAssignment, (customer_id, policy.id), with_for_update=True)
    if assignment is None:
        raise NoTierAssignment(policy.key)
    version_updated_at = await session.scalar(select(TierPolicyVersion.updated_at)
                                              .where(TierPolicyVersion.id == assignment.version_id))
    compiled = await explainer(session, assignment.version_id, version_updated_at)
    if tier_code not in compiled.rank_of:
        raise InvalidInput("/tier", f"'{tier_code}' is not a tier of {policy.key} version {compiled.version}: "
                                    f"one of {', '.join(compiled.rank_of)}")
    now = await session.scalar(select(func.now()))
    before_code, before_rank = _effective(assignment, now)
    assignment.override_code, assignment.override_rank = tier_code, compiled.rank_of[tier_code]
    assignment.override_reason, assignment.override_actor, assignment.override_expires_at = reason, actor, expires_at
    _note(session, assignment, before_code, before_rank, tier_code, compiled.rank_of[tier_code], "override", now)
    await session.flush()


async def remove_override(session: AsyncSession, customer_id: int, policy: TierPolicy) -> None:
    assignment = await session.get(TierAssignment, (customer_id, policy.id), with_for_update=True)
    if assignment is None or assignment.override_code is None:
        return
    now = await session.scalar(select(func.now()))
    before_code, before_rank = _effective(assignment, now)
    assignment.override_code = assignment.override_rank = assignment.override_reason = None
    assignment.override_actor = assignment.override_expires_at = None
    _note(session, assignment, before_code, before_rank, assignment.tier_code, assignment.tier_rank,
          "override_removed", now)
    await session.flush()


def _effective(assignment: TierAssignment, now: datetime) -> tuple[str, int]:
    if assignment.override_code is not None and (assignment.override_expires_at is None
                                                 or assignment.override_expires_at > now):
        return assignment.override_code, assignment.override_rank
    return assignment.tier_code, assignment.tier_rank


def _note(session: AsyncSession, assignment: TierAssignment, from_code: str, from_rank: int, to_code: str,
          to_rank: int, reason: str, now: datetime) -> None:
    if from_code == to_code:
        return
    direction = "upgrade" if to_rank > from_rank else "downgrade" if to_rank < from_rank else "lateral"
    session.add(TierTransition(customer_id=assignment.customer_id, policy_id=assignment.policy_id,
                               version_id=assignment.version_id, from_code=from_code, to_code=to_code,
                               direction=direction, reason=reason, at=now))
