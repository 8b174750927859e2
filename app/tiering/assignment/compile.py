"""Tier assignment, compiled: one set-based statement decides the tiers of one customer or a chunk of millions.

For each customer in scope it evaluates the active version's tiers (the one compiler's CASE over their features),
applies the downgrade grace against the stored assignment, upserts the assignment with the facts that decided it,
and appends every change to the tier_transition feed; all in one SQL statement, no Python loop per customer.
A version's compiled form also reads its assignments back (`explainer`: the explanation template).
"""

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

import sqlalchemy as sa
from pydantic_core import to_json
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from app.core.i18n import pick
from app.core.serializers import document_serializer
from app.core.tracing import current_traceparent
from app.customers.models import Customer
from app.rules import (
    AttributeCatalog,
    ExplainedLeaf,
    compile_explanation,
    features_between,
    features_for_customers,
    load_catalog,
    parse_condition,
)
from app.rules.facts import facts_expression
from app.tiering.assignment.staged import staged_features
from app.tiering.models import TierAssignment, TierPolicy, TierPolicyVersion, TierTransition
from app.tiering.policies import tier_case
from app.tiering.schemas import TierExplanation
from app.webhooks import outbox
from app.webhooks.models import WebhookEvent


@dataclass(frozen=True)
class CompiledVersion:
    """A policy version made ready to run: its CASE, the facts it records, and how to read them back."""

    policy_id: int
    policy_key: str
    version_id: int
    version: int
    grace_days: int
    tiers: list[dict[str, Any]]
    attributes: frozenset[str]  # every attribute the version's conditions read
    features: Any  # the relation tier_code and facts read: customer_features_for(:customer_ids)
    scope: str  # "ids" (:customer_ids) or "range" ([:id_from, :id_to]): which customers the statement covers
    tier_code: ColumnElement[str | None]
    facts: ColumnElement[Any]
    leaves: list[list[ExplainedLeaf]]  # per tier, in compile_explanation order

    @cached_property
    def statement(self):
        return assignment_statement(self)

    @property
    def rank_of(self) -> dict[str, int]:
        return {tier["code"]: tier["rank"] for tier in self.tiers}

    @cached_property
    def explanation(self) -> "ExplanationTemplate":
        return ExplanationTemplate.of(self)


EXPLANATION_JSON = document_serializer(list[TierExplanation])


@dataclass(frozen=True)
class ExplanationTemplate:
    """A version's explanations as the schema's JSON (list[TierExplanation]) with holes for an assignment's stored
    facts, one per tier that can match: each tier tried in order up to it, every comparison with its pointer,
    attribute, operator and threshold written in, its value and result left to fill. Reading a tier back is then a
    join of strings, the facts being JSON already."""

    labels: dict[str, str]
    localized: dict[str, dict[str, str]]  # tier -> {language tag: label}, for the tiers that have any
    by_match: dict[str | None, tuple[tuple[str, ...], tuple[int, ...]]]  # matched tier -> (JSON parts, fact positions)
    by_language: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict, compare=False)  # labels_in

    @classmethod
    def of(cls, compiled: "CompiledVersion") -> "ExplanationTemplate":
        tried, position = [], 0
        for tier, leaves in zip(compiled.tiers, compiled.leaves, strict=True):
            conditions = []
            for leaf in leaves:  # a hole's placeholder: its fact's position between NULs, which no fact holds
                conditions.append(
                    {
                        "pointer": leaf.pointer,
                        "attribute": leaf.attribute,
                        "operator": leaf.operator.value,
                        "threshold": leaf.threshold,
                        "value": f"\0{position}\0",
                        "result": f"\0{position + 1}\0",
                    }
                )
                position += 2
            tried.append((tier["code"], conditions))
        by_match = {}
        for last in [*range(len(tried)), None]:
            shown = tried if last is None else tried[: last + 1]
            # the holes are strings where the schema has values and results: serialized as they are, unwarned
            text = EXPLANATION_JSON.to_json(
                [
                    {"tier": code, "matched": i == last, "conditions": conditions}
                    for i, (code, conditions) in enumerate(shown)
                ],
                warnings=False,
            ).decode()
            parts, positions = [], []
            for _, conditions in shown:
                for condition in conditions:
                    for hole in (condition["value"], condition["result"]):
                        part, text = text.split(to_json(hole).decode(), 1)
                        parts.append(part)
                        positions.append(int(hole.strip("\0")))
            parts.append(text)
            by_match[tried[last][0] if last is not None else None] = (tuple(parts), tuple(positions))
        return cls(
            labels={tier["code"]: tier["label"] for tier in compiled.tiers},
            localized={tier["code"]: tier["labels"] for tier in compiled.tiers if tier.get("labels")},
            by_match=by_match,
        )

    def labels_in(self, language: str, default: str) -> dict[str, str]:
        """Each tier's label in `language` (app/core/i18n.py's fallbacks), else its `label`; picked once per language
        asked (the configured few), not on every read."""
        labels = self.by_language.get((language, default))
        if labels is None:
            labels = self.by_language[(language, default)] = {
                tier: pick(self.localized.get(tier), language, default) or label for tier, label in self.labels.items()
            }
        return labels

    def render(self, facts: list[str], matched: str | None) -> str:
        """The explanation of an assignment as JSON: `facts` are the stored facts, each element as JSON text."""
        parts, positions = self.by_match.get(matched) or self.by_match[None]
        out = [parts[0]]
        for part, position in zip(parts[1:], positions, strict=True):
            out.append(facts[position])
            out.append(part)
        return "".join(out)


_compiled: OrderedDict[tuple, CompiledVersion] = OrderedDict()
CUSTOMER_IDS = bindparam("customer_ids", type_=ARRAY(sa.BigInteger()))
ID_FROM, ID_TO = bindparam("id_from", type_=sa.BigInteger()), bindparam("id_to", type_=sa.BigInteger())


def scoped_features(scope: str):
    """The features an evaluation reads: of the customers in :customer_ids (one, or an intake batch), of the
    id range [:id_from, :id_to] (a chunk of a batch run), or ("staged") those staged for every policy of a refresh,
    of customers within [:id_from, :id_to] (app.tiering.assignment.staged). Same columns, same SELECT underneath."""
    if scope == "staged":
        return staged_features()
    return features_for_customers(CUSTOMER_IDS) if scope == "ids" else features_between(ID_FROM, ID_TO)


def compile_version(
    policy: TierPolicy, version: TierPolicyVersion, catalog: AttributeCatalog, scope: str = "ids"
) -> CompiledVersion:
    """Compile once per (version, catalog, scope): active versions never change, so the result is cached."""
    key = (version.id, version.updated_at, tuple((a.name, a.type) for a in catalog.custom), scope)
    if key in _compiled:
        _compiled.move_to_end(key)
        return _compiled[key]
    leaves = []
    features = scoped_features(scope)
    for i, tier in enumerate(version.tiers):
        condition = parse_condition(tier["condition"], f"/tiers/{i}/condition")
        tier_leaves = compile_explanation(
            condition, catalog, features, pointer=f"/tiers/{i}/condition", label_prefix=f"t{i}"
        )
        leaves.append(tier_leaves)
    compiled = CompiledVersion(
        policy_id=policy.id,
        policy_key=policy.key,
        version_id=version.id,
        version=version.version,
        grace_days=version.downgrade_grace_days,
        tiers=list(version.tiers),
        attributes=frozenset(leaf.attribute for tier_leaves in leaves for leaf in tier_leaves),
        features=features,
        scope=scope,
        tier_code=tier_case(version.tiers, catalog, features),
        facts=facts_expression([leaf for tier_leaves in leaves for leaf in tier_leaves]),
        leaves=leaves,
    )
    _compiled[key] = compiled
    while len(_compiled) > 256:
        _compiled.popitem(last=False)
    return compiled


def _in_scope(customer_id: ColumnElement[int], scope: str) -> ColumnElement[bool]:
    """The statement's customers, said outright on a stored assignment: without it the planner, whose statistics
    may not know a policy's rows yet (a first run), can read every assignment of the policy for each chunk."""
    return customer_id == sa.func.any(CUSTOMER_IDS) if scope == "ids" else customer_id.between(ID_FROM, ID_TO)


def assignment_statement(compiled: CompiledVersion):
    """The one statement: evaluate, apply grace, upsert assignments, append transitions; returns per-direction
    counts. It covers the customers in :customer_ids (one, a list, or a chunk); :now is the evaluation time."""
    now = bindparam("now", type_=sa.DateTime(timezone=True))
    # the tiers' (code, rank) as a UNION ALL of one-row SELECTs, not VALUES: SQLAlchemy cannot cache a statement
    # holding a VALUES with data, and compiled this statement anew at each execution (13-34 ms of the event loop's
    # time per policy and batch, beside the requests the same loop serves)
    tiers = sa.union_all(
        *(
            select(
                sa.literal(tier["code"], sa.Text()).label("code"), sa.literal(tier["rank"], sa.Integer()).label("rank")
            )
            for tier in compiled.tiers
        )
    ).subquery("tiers")
    qualified = (
        select(compiled.features.c.customer_id, compiled.tier_code.label("q_code"), compiled.facts.label("facts"))
        .select_from(compiled.features)
        .cte("qualified")
    )
    current = TierAssignment.__table__.alias("current")
    grace_over = sa.func.coalesce(current.c.lower_since, now) <= now - sa.func.make_interval(
        0, 0, 0, compiled.grace_days
    )
    decision = sa.case(
        (current.c.customer_id.is_(None), "initial"),
        (tiers.c.rank > current.c.tier_rank, "upgrade"),
        (sa.and_(tiers.c.rank == current.c.tier_rank, qualified.c.q_code == current.c.tier_code), "same"),
        (tiers.c.rank == current.c.tier_rank, "lateral"),
        (grace_over, "downgrade"),
        else_="grace",
    )
    decided = (
        select(
            qualified.c.customer_id,
            qualified.c.q_code,
            tiers.c.rank.label("q_rank"),
            qualified.c.facts,
            current.c.tier_code.label("old_code"),
            current.c.tier_rank.label("old_rank"),
            current.c.since.label("old_since"),
            current.c.lower_since.label("old_lower_since"),
            # an override in force: the customer keeps the pinned tier whatever the rules decide (no event)
            sa.and_(
                current.c.override_code.is_not(None),
                sa.or_(current.c.override_expires_at.is_(None), current.c.override_expires_at > now),
            ).label("pinned"),
            decision.label("decision"),
        )
        .select_from(
            qualified.join(tiers, tiers.c.code == qualified.c.q_code).outerjoin(
                current,
                sa.and_(
                    current.c.customer_id == qualified.c.customer_id,
                    current.c.policy_id == compiled.policy_id,
                    _in_scope(current.c.customer_id, compiled.scope),
                ),
            )
        )
        .cte("decided")
    )
    keeps_tier = decided.c.decision == "grace"
    new_values = {
        "version_id": sa.literal(compiled.version_id, sa.BigInteger()),
        "tier_code": sa.case((keeps_tier, decided.c.old_code), else_=decided.c.q_code),
        "tier_rank": sa.case((keeps_tier, decided.c.old_rank), else_=decided.c.q_rank),
        "since": sa.case((decided.c.decision.in_(["same", "grace"]), decided.c.old_since), else_=now),
        "qualified_code": decided.c.q_code,
        "qualified_rank": decided.c.q_rank,
        "lower_since": sa.case((keeps_tier, sa.func.coalesce(decided.c.old_lower_since, now)), else_=sa.null()),
        "facts": decided.c.facts,
    }
    # The lean text of the row (migration a7c0ffee0036), written here so the row trigger does not fire for it:
    # the function the trigger calls, so the same bytes; evaluated_at is :now, on insert and update alike.
    lean_tail = sa.func.tier_assignment_lean_tail(
        new_values["since"], now, new_values["qualified_code"], new_values["lower_since"], compiled.grace_days
    )
    table = TierAssignment.__table__
    # A customer without an assignment gets one by a plain insert: the customers are locked, so no one else can
    # insert it meanwhile, and a plain insert costs less than an upsert (a first run writes a million).
    inserted = (
        insert(table)
        .from_select(
            ["customer_id", "policy_id", *new_values, "evaluated_at", "lean_tail"],
            select(
                decided.c.customer_id,
                sa.literal(compiled.policy_id, sa.BigInteger()),
                *new_values.values(),
                now,
                lean_tail,
            ).where(decided.c.decision == "initial"),
        )
        .returning(table.c.customer_id)
        .cte("inserted")
    )
    # An evaluation that changes nothing writes nothing: evaluated_at is when the decision or its facts last
    # changed, and a re-run over a quiet population costs reads only.
    updated = (
        update(table)
        .where(
            table.c.customer_id == decided.c.customer_id,
            table.c.policy_id == compiled.policy_id,
            _in_scope(table.c.customer_id, compiled.scope),
            decided.c.decision != "initial",
            sa.tuple_(*(table.c[name] for name in new_values)).is_distinct_from(sa.tuple_(*new_values.values())),
        )
        .values(**new_values, evaluated_at=now, lean_tail=lean_tail)
        .returning(table.c.customer_id)
        .cte("updated")
    )
    changed = decided.c.decision.in_(["initial", "upgrade", "downgrade", "lateral"])
    transitions = (
        insert(TierTransition.__table__)
        .from_select(
            ["customer_id", "policy_id", "version_id", "from_code", "to_code", "direction", "reason", "at"],
            select(
                decided.c.customer_id,
                sa.literal(compiled.policy_id, sa.BigInteger()),
                sa.literal(compiled.version_id, sa.BigInteger()),
                decided.c.old_code,
                decided.c.q_code,
                decided.c.decision,
                sa.case((decided.c.decision == "downgrade", "grace_elapsed"), else_="rules"),
                now,
            )
            .where(changed)
            .order_by(decided.c.customer_id),
        )
        .returning(TierTransition.__table__.c.direction)
        .cte("transitions")
    )
    events = _events(compiled, decided, now)
    return select(
        (
            select(func.count()).select_from(inserted).scalar_subquery()
            + select(func.count()).select_from(updated).scalar_subquery()
        ).label("evaluated"),
        select(func.count())
        .select_from(transitions)
        .where(transitions.c.direction == "upgrade")
        .scalar_subquery()
        .label("upgrades"),
        select(func.count())
        .select_from(transitions)
        .where(transitions.c.direction == "downgrade")
        .scalar_subquery()
        .label("downgrades"),
        select(func.count())
        .select_from(transitions)
        .where(transitions.c.direction == "initial")
        .scalar_subquery()
        .label("initial"),
        select(func.count()).select_from(events).scalar_subquery().label("events"),
    )


def _events(compiled: CompiledVersion, decided, now):
    """The webhook events of the statement's changes, into the outbox in its transaction (set-based, in customer
    order): tier.upgraded and tier.downgraded for the moves the feed records (not a first assignment, not a lateral
    move), tier.at_risk when a customer enters the grace period; none while an override pins the tier."""
    external_id = select(Customer.external_id).where(Customer.id == decided.c.customer_id).scalar_subquery()
    entered_grace = sa.and_(decided.c.decision == "grace", decided.c.old_lower_since.is_(None))
    policy = sa.literal(compiled.policy_key, sa.Text())
    changed = outbox.json_object(
        customer_id=external_id,
        policy_key=policy,
        from_tier=decided.c.old_code,
        to_tier=decided.c.q_code,
        reason=sa.case((decided.c.decision == "downgrade", "grace_elapsed"), else_="rules"),
        at=now,
    )
    at_risk = outbox.json_object(
        customer_id=external_id,
        policy_key=policy,
        tier=decided.c.old_code,
        downgrade_to=decided.c.q_code,
        downgrade_on=sa.cast(now + sa.func.make_interval(0, 0, 0, compiled.grace_days), sa.Date),
    )
    return (
        outbox.emit_from(
            select(
                sa.case(
                    (decided.c.decision == "upgrade", "tier.upgraded"),
                    (decided.c.decision == "downgrade", "tier.downgraded"),
                    else_="tier.at_risk",
                ),
                decided.c.customer_id,
                sa.case((entered_grace, at_risk), else_=changed),
            )
            .where(
                sa.or_(decided.c.decision.in_(["upgrade", "downgrade"]), entered_grace),
                sa.not_(decided.c.pinned),
            )
            .order_by(decided.c.customer_id),
            traceparent=bindparam("traceparent", type_=sa.String(55)),
        )
        .returning(WebhookEvent.__table__.c.id)
        .cte("events")
    )


@dataclass
class AssignmentCounts:
    evaluated: int = 0
    upgrades: int = 0
    downgrades: int = 0
    initial: int = 0
    events: int = 0  # webhook events written to the outbox

    def add(self, other: "AssignmentCounts") -> None:
        self.evaluated += other.evaluated
        self.upgrades += other.upgrades
        self.downgrades += other.downgrades
        self.initial += other.initial
        self.events += other.events


async def assign(
    session: AsyncSession,
    compiled: CompiledVersion,
    now: datetime,
    *,
    customer_ids: Sequence[int] | None = None,
    id_range: tuple[int, int] | None = None,
) -> AssignmentCounts:
    """Evaluate one policy version for some customers or an id range (compiled for that scope): the same
    statement, and the same conditions, for one customer or a chunk of a million."""
    params = (
        {"customer_ids": list(customer_ids)}
        if customer_ids is not None
        else {"id_from": id_range[0], "id_to": id_range[1]}
    )
    params["traceparent"] = current_traceparent()
    row = (await session.execute(compiled.statement, {"now": now, **params})).one()
    return AssignmentCounts(
        evaluated=row.evaluated,
        upgrades=row.upgrades,
        downgrades=row.downgrades,
        initial=row.initial,
        events=row.events,
    )


async def active_versions(
    session: AsyncSession, policy_ids: Sequence[int] | None = None
) -> list[tuple[TierPolicy, TierPolicyVersion]]:
    query = (
        select(TierPolicy, TierPolicyVersion)
        .join(TierPolicyVersion, TierPolicyVersion.policy_id == TierPolicy.id)
        .where(TierPolicyVersion.status == "active")
        .order_by(TierPolicy.key)
    )
    if policy_ids is not None:
        query = query.where(TierPolicy.id.in_(policy_ids))
    return [(policy, version) for policy, version in (await session.execute(query)).all()]


async def compiled_active_versions(
    session: AsyncSession, policy_ids: Sequence[int] | None = None, scope: str = "ids"
) -> list[CompiledVersion]:
    pairs = await active_versions(session, policy_ids)
    if not pairs:
        return []
    catalog = await load_catalog(session)
    return [compile_version(policy, version, catalog, scope) for policy, version in pairs]


_explainers: dict[tuple[int, datetime], CompiledVersion] = {}


def cached_explainer(version_id: int, updated_at: datetime) -> CompiledVersion | None:
    """`explainer`'s result when this process has already compiled the version, without a session."""
    return _explainers.get((version_id, updated_at))


async def explainer(session: AsyncSession, version_id: int, updated_at: datetime) -> CompiledVersion:
    """The compiled form of any version an assignment refers to (versions referred to are never edited)."""
    key = (version_id, updated_at)
    if key not in _explainers:
        policy, version = (
            await session.execute(
                select(TierPolicy, TierPolicyVersion)
                .join(TierPolicyVersion, TierPolicyVersion.policy_id == TierPolicy.id)
                .where(TierPolicyVersion.id == version_id)
            )
        ).one()
        _explainers[key] = compile_version(policy, version, await load_catalog(session))
    return _explainers[key]
