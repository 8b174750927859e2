"""Tier overrides: a relationship manager pins a customer's tier under a policy, until it expires or is removed;
each change of the tier the customer has lands in the feed."""

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InvalidInput
from app.customers.models import Customer
from app.tiering.assignment.compile import explainer
from app.tiering.errors import NoTierAssignment
from app.tiering.models import (
    TierAssignment,
    TierPolicy,
    TierPolicyVersion,
    TierTransition,
    effective_rank,
    effective_tier,
)
from app.webhooks import outbox


async def set_override(
    session: AsyncSession,
    customer_id: int,
    policy: TierPolicy,
    tier_code: str,
    reason: str,
    expires_at: datetime | None,
    actor: str,
) -> None:
    """Pin a customer's tier under a policy (a relationship manager's decision), until it expires or is removed."""
    locked = await _locked(session, customer_id, policy.id)
    if locked is None:
        raise NoTierAssignment(policy.key)
    assignment, before_code, before_rank, now = locked
    version_updated_at = await session.scalar(
        select(TierPolicyVersion.updated_at).where(TierPolicyVersion.id == assignment.version_id)
    )
    compiled = await explainer(session, assignment.version_id, version_updated_at)
    if tier_code not in compiled.rank_of:
        raise InvalidInput(
            "/tier",
            f"'{tier_code}' is not a tier of {policy.key} version {compiled.version}: "
            f"one of {', '.join(compiled.rank_of)}",
        )
    assignment.override_code, assignment.override_rank = tier_code, compiled.rank_of[tier_code]
    assignment.override_reason, assignment.override_actor, assignment.override_expires_at = reason, actor, expires_at
    await _note(
        session, assignment, before_code, before_rank, tier_code, compiled.rank_of[tier_code], "override", now, policy
    )
    await session.flush()


async def remove_override(session: AsyncSession, customer_id: int, policy: TierPolicy) -> None:
    locked = await _locked(session, customer_id, policy.id)
    if locked is None or locked[0].override_code is None:
        return
    assignment, before_code, before_rank, now = locked
    assignment.override_code = assignment.override_rank = assignment.override_reason = None
    assignment.override_actor = assignment.override_expires_at = None
    await _note(
        session,
        assignment,
        before_code,
        before_rank,
        assignment.tier_code,
        assignment.tier_rank,
        "override_removed",
        now,
        policy,
    )
    await session.flush()


async def lock_assignment(session: AsyncSession, customer_id: int, policy_id: int) -> None:
    """Lock the customer's assignment under the policy (if any) for the transaction: read the override after
    this to check a write's precondition against it."""
    await _locked(session, customer_id, policy_id)


async def _locked(
    session: AsyncSession, customer_id: int, policy_id: int
) -> tuple[TierAssignment, str, int, datetime] | None:
    """The assignment, locked, with the tier and rank the customer has now and the transaction's time."""
    row = (
        await session.execute(
            select(TierAssignment, effective_tier(), effective_rank(), func.now())
            .where(TierAssignment.customer_id == customer_id, TierAssignment.policy_id == policy_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).first()
    return tuple(row) if row is not None else None


async def _note(
    session: AsyncSession,
    assignment: TierAssignment,
    from_code: str,
    from_rank: int,
    to_code: str,
    to_rank: int,
    reason: str,
    now: datetime,
    policy: TierPolicy,
) -> None:
    """The change of the tier the customer has, in the feed and, up or down, as a webhook event."""
    if from_code == to_code:
        return
    direction = "upgrade" if to_rank > from_rank else "downgrade" if to_rank < from_rank else "lateral"
    session.add(
        TierTransition(
            customer_id=assignment.customer_id,
            policy_id=assignment.policy_id,
            version_id=assignment.version_id,
            from_code=from_code,
            to_code=to_code,
            direction=direction,
            reason=reason,
            at=now,
        )
    )
    if direction != "lateral":
        external_id = await session.scalar(select(Customer.external_id).where(Customer.id == assignment.customer_id))
        await outbox.emit(
            session,
            "tier.upgraded" if direction == "upgrade" else "tier.downgraded",
            {
                "customer_id": external_id,
                "policy_key": policy.key,
                "from_tier": from_code,
                "to_tier": to_code,
                "reason": reason,
                "at": now,
            },
            customer_id=assignment.customer_id,
        )
