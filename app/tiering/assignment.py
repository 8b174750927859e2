"""Tier assignment: one set-based statement decides the tiers of one customer or a chunk of millions.

For each customer in scope it evaluates the active version's tiers (the one compiler's CASE over their features),
applies the downgrade grace against the stored assignment, upserts the assignment with the facts that decided it,
and appends every change to the tier_transition feed; all in one SQL statement, no Python loop per customer.
"""

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession
from pydantic_core import to_json
from sqlalchemy.sql import ColumnElement

from app.rules import (AttributeCatalog, ExplainedLeaf, compile_explanation, features_between,
                       features_for_customers, parse_condition)
from app.rules.compile import facts_expression
from app.tiering.models import TierAssignment, TierPolicy, TierPolicyVersion, TierTransition
from app.tiering.policies import tier_case

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


@dataclass(frozen=True)
class ExplanationTemplate:
    """A version's explanations as JSON text with holes for an assignment's stored facts, one per tier that can
    match: each tier tried in order up to it, every comparison with its pointer, attribute, operator and threshold
    written in, its value and result left to fill. Reading a tier back is then a join of strings."""

    labels: dict[str, str]
    by_match: dict[str | None, tuple[tuple[str, ...], tuple[int, ...]]]  # matched tier -> (text parts, fact positions)

    @classmethod
    def of(cls, compiled: "CompiledVersion") -> "ExplanationTemplate":
        by_match: dict[str | None, tuple[tuple[str, ...], tuple[int, ...]]] = {}
        for last in [*range(len(compiled.tiers)), None]:
            parts, positions, text, position = [], [], "[", 0
            for i, (tier, leaves) in enumerate(zip(compiled.tiers, compiled.leaves, strict=True)):
                if i > 0:
                    text += ","
                text += '{"tier":' + _json(tier["code"]) + ',"matched":' + _json(i == last) + ',"conditions":['
                for j, leaf in enumerate(leaves):
                    text += ("," if j else "") + '{"pointer":' + _json(leaf.pointer) + ',"attribute":' + \
                        _json(leaf.attribute) + ',"operator":' + _json(leaf.operator.value) + ',"threshold":' + \
                        _json(leaf.threshold) + ',"value":'
                    parts.append(text)
                    positions.append(position)
                    parts.append(',"result":')
                    positions.append(position + 1)
                    text = "}"
                    position += 2
                text += "]}"
                if i == last:
                    break
            parts.append(text + "]")
            by_match[compiled.tiers[last]["code"] if last is not None else None] = (tuple(parts), tuple(positions))
        return cls(labels={tier["code"]: tier["label"] for tier in compiled.tiers}, by_match=by_match)

    def render(self, facts: list[str], matched: str | None) -> str:
        """The explanation of an assignment as JSON: `facts` are the stored facts, each element as JSON text."""
        parts, positions = self.by_match.get(matched) or self.by_match[None]
        out = [parts[0]]
        for part, position in zip(parts[1:], positions, strict=True):
            out.append(facts[position])
            out.append(part)
        return "".join(out)


def _json(value: Any) -> str:
    return to_json(value).decode()


_compiled: OrderedDict[tuple, CompiledVersion] = OrderedDict()
CUSTOMER_IDS = bindparam("customer_ids", type_=ARRAY(sa.BigInteger()))
ID_FROM, ID_TO = bindparam("id_from", type_=sa.BigInteger()), bindparam("id_to", type_=sa.BigInteger())


def scoped_features(scope: str):
    """The features an evaluation reads: of the customers in :customer_ids (one, or an intake batch), or of the
    id range [:id_from, :id_to] (a chunk of a batch run). Same columns, same SELECT underneath."""
    return features_for_customers(CUSTOMER_IDS) if scope == "ids" else features_between(ID_FROM, ID_TO)


def compile_version(policy: TierPolicy, version: TierPolicyVersion, catalog: AttributeCatalog,
                    scope: str = "ids") -> CompiledVersion:
    """Compile once per (version, catalog, scope): active versions never change, so the result is cached."""
    key = (version.id, version.updated_at, tuple((a.name, a.type) for a in catalog.custom), scope)
    if key in _compiled:
        _compiled.move_to_end(key)
        return _compiled[key]
    leaves = []
    features = scoped_features(scope)
    for i, tier in enumerate(version.tiers):
        condition = parse_condition(tier["condition"], f"/tiers/{i}/condition")
        tier_leaves = compile_explanation(condition, catalog, features, pointer=f"/tiers/{i}/condition",
                                          label_prefix=f"t{i}")
        leaves.append(tier_leaves)
    compiled = CompiledVersion(
        policy_id=policy.id, policy_key=policy.key, version_id=version.id, version=version.version,
        grace_days=version.downgrade_grace_days, tiers=list(version.tiers),
        attributes=frozenset(leaf.attribute for tier_leaves in leaves for leaf in tier_leaves),
        features=features, scope=scope, tier_code=tier_case(version.tiers, catalog, features), facts=facts_expression([leaf for tier_leaves in leaves for leaf in tier_leaves]),
        leaves=leaves)
    _compiled[key] = compiled
    while len(_compiled) > 256:
        _compiled.popitem(last=False)
    return compiled


def _in_scope(customer_id: ColumnElement[int], scope: str) -> ColumnElement[bool]:
    """The statement's customers, said outright on a stored assignment: without it the planner, whose statistics
    may not know a policy's rows yet (a first run), can read every assignment of the policy for each chunk."""
    return customer_id.between(ID_FROM, ID_TO) if scope == "range" else customer_id == sa.func.any(CUSTOMER_IDS)


def assignment_statement(compiled: CompiledVersion):
    """The one statement: evaluate, apply grace, upsert assignments, append transitions; returns per-direction
    counts. It covers the customers in :customer_ids (one, a list, or a chunk); :now is the evaluation time."""
    now = bindparam("now", type_=sa.DateTime(timezone=True))
    tiers = sa.values(sa.column("code", sa.Text()), sa.column("rank", sa.Integer()), name="tiers").data(
        [(tier["code"], tier["rank"]) for tier in compiled.tiers])
    qualified = (select(compiled.features.c.customer_id, compiled.tier_code.label("q_code"),
                        compiled.facts.label("facts"))
                 .select_from(compiled.features).cte("qualified"))
    current = TierAssignment.__table__.alias("current")
    grace_over = sa.func.coalesce(current.c.lower_since, now) <= now - sa.func.make_interval(
        0, 0, 0, compiled.grace_days)
    decision = sa.case(
        (current.c.customer_id.is_(None), "initial"),
        (tiers.c.rank > current.c.tier_rank, "upgrade"),
        (sa.and_(tiers.c.rank == current.c.tier_rank, qualified.c.q_code == current.c.tier_code), "same"),
        (tiers.c.rank == current.c.tier_rank, "lateral"),
        (grace_over, "downgrade"),
        else_="grace",
    )
    decided = (
        select(qualified.c.customer_id, qualified.c.q_code, tiers.c.rank.label("q_rank"), qualified.c.facts,
               current.c.tier_code.label("old_code"), current.c.tier_rank.label("old_rank"),
               current.c.since.label("old_since"), current.c.lower_since.label("old_lower_since"),
               decision.label("decision"))
        .select_from(qualified.join(tiers, tiers.c.code == qualified.c.q_code)
                     .outerjoin(current, sa.and_(current.c.customer_id == qualified.c.customer_id,
                                                 current.c.policy_id == compiled.policy_id,
                                                 _in_scope(current.c.customer_id, compiled.scope))))
        .cte("decided"))
    keeps_tier = decided.c.decision == "grace"
    new_values = {
        "version_id": sa.literal(compiled.version_id, sa.BigInteger()),
        "tier_code": sa.case((keeps_tier, decided.c.old_code), else_=decided.c.q_code),
        "tier_rank": sa.case((keeps_tier, decided.c.old_rank), else_=decided.c.q_rank),
        "since": sa.case((decided.c.decision.in_(["same", "grace"]), decided.c.old_since), else_=now),
        "qualified_code": decided.c.q_code, "qualified_rank": decided.c.q_rank,
        "lower_since": sa.case((keeps_tier, sa.func.coalesce(decided.c.old_lower_since, now)), else_=sa.null()),
        "facts": decided.c.facts,
    }
    table = TierAssignment.__table__
    # A customer without an assignment gets one by a plain insert: the customers are locked, so no one else can
    # insert it meanwhile, and a plain insert costs less than an upsert (a first run writes a million).
    inserted = insert(table).from_select(
        ["customer_id", "policy_id", *new_values, "evaluated_at"],
        select(decided.c.customer_id, sa.literal(compiled.policy_id, sa.BigInteger()), *new_values.values(), now)
        .where(decided.c.decision == "initial")
    ).returning(table.c.customer_id).cte("inserted")
    # An evaluation that changes nothing writes nothing: evaluated_at is when the decision or its facts last
    # changed, and a re-run over a quiet population costs reads only.
    updated = (
        update(table)
        .where(table.c.customer_id == decided.c.customer_id, table.c.policy_id == compiled.policy_id,
               _in_scope(table.c.customer_id, compiled.scope), decided.c.decision != "initial",
               sa.tuple_(*(table.c[name] for name in new_values)).is_distinct_from(sa.tuple_(*new_values.values())))
        .values(**new_values, evaluated_at=now)
        .returning(table.c.customer_id).cte("updated"))
    changed = decided.c.decision.in_(["initial", "upgrade", "downgrade", "lateral"])
    transitions = insert(TierTransition.__table__).from_select(
        ["customer_id", "policy_id", "version_id", "from_code", "to_code", "direction", "reason", "at"],
        select(decided.c.customer_id, sa.literal(compiled.policy_id, sa.BigInteger()),
               sa.literal(compiled.version_id, sa.BigInteger()), decided.c.old_code, decided.c.q_code,
               decided.c.decision,
               sa.case((decided.c.decision == "downgrade", "grace_elapsed"), else_="rules"), now)
        .where(changed).order_by(decided.c.customer_id)
    ).returning(TierTransition.__table__.c.direction).cte("transitions")
    return select(
        (select(func.count()).select_from(inserted).scalar_subquery()
         + select(func.count()).select_from(updated).scalar_subquery()).label("evaluated"),
        select(func.count()).select_from(transitions).where(transitions.c.direction == "upgrade")
        .scalar_subquery().label("upgrades"),
        select(func.count()).select_from(transitions).where(transitions.c.direction == "downgrade")
        .scalar_subquery().label("downgrades"),
        select(func.count()).select_from(transitions).where(transitions.c.direction == "initial")
        .scalar_subquery().label("initial"),
    )


@dataclass
class AssignmentCounts:
    evaluated: int = 0
    upgrades: int = 0
    downgrades: int = 0
    initial: int = 0

    def add(self, other: "AssignmentCounts") -> None:
        self.evaluated += other.evaluated
        self.upgrades += other.upgrades
        self.downgrades += other.downgrades
        self.initial += other.initial


async def assign(session: AsyncSession, compiled: CompiledVersion, now: datetime, *,
                 customer_ids: Sequence[int] | None = None, id_range: tuple[int, int] | None = None
                 ) -> AssignmentCounts:
    """Evaluate one policy version for some customers or an id range (compiled for that scope): the same
    statement, and the same conditions, for one customer or a chunk of a million."""
    params = {"customer_ids": list(customer_ids)} if customer_ids is not None else {
        "id_from": id_range[0], "id_to": id_range[1]}
    row = (await session.execute(compiled.statement, {"now": now, **params})).one()
    return AssignmentCounts(evaluated=row.evaluated, upgrades=row.upgrades, downgrades=row.downgrades,
                            initial=row.initial)


# ---- orchestration: which versions, which customers ------------------------------------------------------------

async def active_versions(session: AsyncSession, policy_ids: Sequence[int] | None = None
                          ) -> list[tuple[TierPolicy, TierPolicyVersion]]:
    query = (select(TierPolicy, TierPolicyVersion).join(TierPolicyVersion, TierPolicyVersion.policy_id == TierPolicy.id)
             .where(TierPolicyVersion.status == "active").order_by(TierPolicy.key))
    if policy_ids is not None:
        query = query.where(TierPolicy.id.in_(policy_ids))
    return [(policy, version) for policy, version in (await session.execute(query)).all()]


async def compiled_active_versions(session: AsyncSession, policy_ids: Sequence[int] | None = None,
                                   scope: str = "ids") -> list[CompiledVersion]:
    from app.rules import load_catalog

    pairs = await active_versions(session, policy_ids)
    if not pairs:
        return []
    catalog = await load_catalog(session)
    return [compile_version(policy, version, catalog, scope) for policy, version in pairs]


async def refresh_customers(session: AsyncSession, customer_ids: Sequence[int], now: datetime | None = None,
                            policy_ids: Sequence[int] | None = None,
                            changed: frozenset[str] | None = None) -> AssignmentCounts:
    """Re-evaluate every active policy for these customers, in the caller's transaction (so a write to a
    customer and its new tier commit together: the app never reads a stale tier after a deposit). With
    `changed` (the attributes a write can have moved), only the policies reading one of them are evaluated.
    Every write to a customer's data calls this; so it also marks their offer states stale (recommendations).

    Many customers with close ids (an import) are evaluated as their id range, like a chunk of a batch run;
    scattered ones (an intake batch) by id."""
    from app.customers.service import lock_customer_range, lock_customers
    from app.recommendations import offer_state

    totals = AssignmentCounts()
    if not customer_ids:
        return totals
    ids = sorted(set(customer_ids))
    dense = len(ids) > 100 and ids[-1] - ids[0] < 2 * len(ids)
    if dense:
        # Plan for this range: a cached generic plan cannot see it and may nest-loop over the whole table.
        await session.execute(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))
        await lock_customer_range(session, ids[0], ids[-1])
    else:
        await lock_customers(session, ids)
    await offer_state.mark_stale(session, ids, changed)
    now = now or await session.scalar(select(func.now()))
    versions = await compiled_active_versions(session, policy_ids, "range" if dense else "ids")
    for compiled in versions:
        if changed is not None and not compiled.attributes & changed:
            continue
        if dense:
            totals.add(await assign(session, compiled, now, id_range=(ids[0], ids[-1])))
            await expire_overrides(session, compiled.policy_id, now, ids[0], ids[-1])
        else:
            totals.add(await assign(session, compiled, now, customer_ids=ids))
            await expire_overrides(session, compiled.policy_id, now, ids[0], ids[-1], ids)
    return totals


_EXPIRE_OVERRIDES = sa.text("""
WITH expired AS (
    SELECT customer_id, override_code, override_rank, tier_code, tier_rank, version_id FROM tier_assignment
    WHERE policy_id = :policy_id AND override_code IS NOT NULL AND override_expires_at <= :now
      AND customer_id BETWEEN :id_from AND :id_to
      AND (CAST(:customer_ids AS bigint[]) IS NULL OR customer_id = ANY(CAST(:customer_ids AS bigint[])))
    ORDER BY customer_id FOR UPDATE
), cleared AS (
    UPDATE tier_assignment a SET override_code = NULL, override_rank = NULL, override_reason = NULL,
                                 override_actor = NULL, override_expires_at = NULL
    FROM expired e WHERE a.customer_id = e.customer_id AND a.policy_id = :policy_id
    RETURNING a.customer_id
)
INSERT INTO tier_transition (customer_id, policy_id, version_id, from_code, to_code, direction, reason, at)
SELECT customer_id, :policy_id, version_id, override_code, tier_code,
       CASE WHEN tier_rank > override_rank THEN 'upgrade' WHEN tier_rank < override_rank THEN 'downgrade'
            ELSE 'lateral' END, 'override_expired', :now
FROM expired WHERE override_code <> tier_code
""")


async def expire_overrides(session: AsyncSession, policy_id: int, now: datetime, id_from: int, id_to: int,
                           customer_ids: Sequence[int] | None = None) -> None:
    """Clear overrides past their expiry (of customers with ids in [id_from, id_to], or only `customer_ids` of
    them) and note each in the feed. Reads already ignore an expired override; this tidies rows for the feed."""
    await session.execute(_EXPIRE_OVERRIDES, {"policy_id": policy_id, "now": now, "id_from": id_from,
                                              "id_to": id_to, "customer_ids": customer_ids})


# ---- reads -------------------------------------------------------------------------------------------------------

_explainers: dict[tuple[int, datetime], CompiledVersion] = {}


async def explainer(session: AsyncSession, version_id: int, updated_at: datetime) -> CompiledVersion:
    """The compiled form of any version an assignment refers to (versions referred to are never edited)."""
    key = (version_id, updated_at)
    if key not in _explainers:
        from app.rules import load_catalog

        policy, version = (await session.execute(
            select(TierPolicy, TierPolicyVersion).join(TierPolicyVersion, TierPolicyVersion.policy_id == TierPolicy.id)
            .where(TierPolicyVersion.id == version_id))).one()
        _explainers[key] = compile_version(policy, version, await load_catalog(session))
    return _explainers[key]


def effective_tier_code(assignment=TierAssignment, now=None) -> ColumnElement[str]:
    """The tier a customer has: an unexpired override, else the tier the rules (and grace) gave."""
    now = now if now is not None else func.now()
    override_applies = sa.and_(assignment.override_code.is_not(None),
                               sa.or_(assignment.override_expires_at.is_(None), assignment.override_expires_at > now))
    return sa.case((override_applies, assignment.override_code), else_=assignment.tier_code)


# The hottest read of the service (GET /v1/customers/{id}/tiers): one indexed query, run on the driver.
_CUSTOMER_TIERS = """
SELECT p.key, v.version, a.version_id, v.updated_at AS version_updated_at, a.tier_code, a.tier_rank, a.since,
       a.evaluated_at, a.qualified_code, a.lower_since, a.override_code, a.override_rank, a.override_reason,
       a.override_actor, a.override_expires_at, now() AS now,
       ARRAY(SELECT f::text FROM jsonb_array_elements(a.facts) f) AS facts
FROM customer c
LEFT JOIN tier_assignment a ON a.customer_id = c.id
LEFT JOIN tier_policy p ON p.id = a.policy_id
LEFT JOIN tier_policy_version v ON v.id = a.version_id
WHERE c.external_id = $1 AND c.erased_at IS NULL
ORDER BY p.key
"""


async def customer_tiers_json(connection, sessionmaker, external_id: str) -> bytes:
    """The CustomerTiers document of a customer: every tier with since-when, grace state, override and explanation.
    One indexed read on `connection` (a driver connection); each explanation is the version's template with the
    stored facts (JSON text) in its holes; a version not yet compiled in this process is read in a session
    from `sessionmaker` (a zero-argument callable returning an async context manager of a session). 404 when there is no such customer."""
    rows = await connection.fetch(_CUSTOMER_TIERS, external_id)
    if not rows:
        from app.customers.errors import CustomerNotFound

        raise CustomerNotFound(external_id)
    tiers = []
    for row in rows:
        if row["version_id"] is None:
            continue
        compiled = _explainers.get((row["version_id"], row["version_updated_at"]))
        if compiled is None:
            async with sessionmaker() as session:
                compiled = await explainer(session, row["version_id"], row["version_updated_at"])
        override_applies = row["override_code"] is not None and (
            row["override_expires_at"] is None or row["override_expires_at"] > row["now"])
        tier = row["override_code"] if override_applies else row["tier_code"]
        at_risk = row["lower_since"] is not None
        head = to_json({
            "policy": row["key"], "policy_version": row["version"], "tier": tier,
            "label": compiled.explanation.labels.get(tier, tier),
            "rank": row["override_rank"] if override_applies else row["tier_rank"],
            "since": row["since"], "evaluated_at": row["evaluated_at"],
            "qualified_tier": row["qualified_code"], "at_risk": at_risk,
            "downgrade_to": row["qualified_code"] if at_risk else None,
            "downgrade_on": (row["lower_since"] + timedelta(days=compiled.grace_days)).date() if at_risk else None,
            "override": {"tier": row["override_code"], "reason": row["override_reason"],
                         "actor": row["override_actor"], "expires_at": row["override_expires_at"]}
            if override_applies else None})
        explanation = compiled.explanation.render(row["facts"], row["qualified_code"])
        tiers.append(head[:-1] + b',"explanation":' + explanation.encode() + b"}")
    return b'{"customer_id":' + to_json(external_id) + b',"tiers":[' + b",".join(tiers) + b"]}"


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


_FEED_VISIBLE = sa.text("(pg_snapshot_xmin(pg_current_snapshot())::text)::bigint")
_OWN_TRANSACTION = sa.text("(pg_current_xact_id_if_assigned()::text)::bigint")


async def transitions_page(session: AsyncSession, *, after: tuple[int, int] | None, limit: int,
                           customer_id: int | None = None, policy_id: int | None = None) -> list[Any]:
    """Transitions in feed order (writing transaction, then id). The feed shows only rows of transactions that
    finished before every transaction still running, so nothing can later appear behind a reader's cursor."""
    from app.customers.models import Customer

    query = (select(TierTransition, TierPolicy.key, Customer.external_id)
             .join(TierPolicy, TierPolicy.id == TierTransition.policy_id)
             .join(Customer, Customer.id == TierTransition.customer_id)
             .order_by(TierTransition.tx_id, TierTransition.id).limit(limit + 1))
    if customer_id is None:
        # (a transaction also sees the rows it wrote itself)
        query = query.where(sa.or_(TierTransition.tx_id < _FEED_VISIBLE, TierTransition.tx_id == _OWN_TRANSACTION))
    else:
        query = query.where(TierTransition.customer_id == customer_id)
    if policy_id is not None:
        query = query.where(TierTransition.policy_id == policy_id)
    if after is not None:
        query = query.where(sa.tuple_(TierTransition.tx_id, TierTransition.id) > sa.tuple_(*after))
    return list((await session.execute(query)).all())


def tier_filter(policy_id: int, tier: str | None, at_risk: bool | None) -> ColumnElement[bool]:
    """Customers (by customer.id) holding a tier under a policy, or at risk of a downgrade: for list filters."""
    from app.customers.models import Customer

    query = select(TierAssignment.customer_id).where(TierAssignment.policy_id == policy_id)
    if tier is not None:
        query = query.where(effective_tier_code() == tier)
    if at_risk is not None:
        query = query.where(TierAssignment.lower_since.is_not(None) if at_risk else TierAssignment.lower_since.is_(None))
    return Customer.id.in_(query)


_CARE_CALENDAR = sa.text("""
SELECT c.external_id AS customer_id, c.display_name, a.tier AS tier, o.occasion,
       o.next_date::text AS date, date_part('year', age(o.next_date, o.origin))::int AS years
FROM (SELECT customer_id,
             CASE WHEN override_code IS NOT NULL AND (override_expires_at IS NULL OR override_expires_at > now())
                  THEN override_code ELSE tier_code END AS tier
      FROM tier_assignment WHERE policy_id = :policy_id) a
JOIN customer c ON c.id = a.customer_id AND c.erased_at IS NULL
CROSS JOIN LATERAL (VALUES ('birthday', c.birth_date), ('anniversary', (c.onboarded_at AT TIME ZONE 'UTC')::date))
     AS d(occasion, origin)
CROSS JOIN LATERAL (SELECT d.occasion, d.origin,
     (d.origin + (date_part('year', age(current_date - 1, d.origin)) + 1) * interval '1 year')::date AS next_date) o
WHERE a.tier = :tier AND d.origin IS NOT NULL AND o.next_date <= current_date + CAST(:days AS integer)
  AND date_part('year', age(o.next_date, o.origin)) >= 1
ORDER BY o.next_date, c.external_id
LIMIT 1000
""")


async def care_calendar(session: AsyncSession, policy_id: int, tier: str, days: int) -> list[dict[str, Any]]:
    rows = await session.execute(_CARE_CALENDAR, {"policy_id": policy_id, "tier": tier, "days": days})
    return [dict(row._mapping) for row in rows]
