"""The contact policy as data: rules that suppress offers after ignored impressions or dismissals."""

import json
from pathlib import Path

from sqlalchemy import delete, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.recommendations.models import ContactRule
from app.recommendations.schemas import ContactRuleIn

DEFAULT_CONTACT_POLICY = Path(__file__).resolve().parents[1] / "defaults" / "contact_policy.json"
RULE_FIELDS = ("name", "outcome", "threshold", "window_days", "scope", "channel", "suppress_days", "is_active")


async def list_rules(session: AsyncSession) -> list[ContactRuleIn]:
    rows = (await session.scalars(select(ContactRule).order_by(ContactRule.id))).all()
    return [ContactRuleIn(**{f: getattr(row, f) for f in RULE_FIELDS}) for row in rows]


async def lock_rules(session: AsyncSession) -> None:
    """One writer of the contact policy at a time, until this transaction ends (the policy is a set of rows, and
    an empty set has no row to lock)."""
    await session.execute(text("SELECT pg_advisory_xact_lock(7310, 30)"))


async def replace_rules(session: AsyncSession, rules: list[ContactRuleIn]) -> None:
    await session.execute(delete(ContactRule))
    if rules:
        await session.execute(insert(ContactRule), [rule.model_dump() for rule in rules])
    await session.flush()


async def load_default_contact_policy(session: AsyncSession) -> None:
    """Install the shipped contact policy when none is set."""
    if await session.scalar(select(ContactRule.id).limit(1)) is None:
        rules = json.loads(DEFAULT_CONTACT_POLICY.read_text())["rules"]
        await replace_rules(session, [ContactRuleIn(**rule) for rule in rules])
