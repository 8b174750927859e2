"""What a condition still takes: the compiler's explanation read as distances instead of booleans.

A tier's gap is computed from the very leaves `compile_explanation` gives and the values an evaluation recorded
for them (a tier assignment's facts), so the gap and the tier can never disagree: the customer's value shown here
is the value GET .../tiers explains, byte for byte.

Per comparison: the customer's value, the threshold, whether it holds, the distance (how much more or less of
the attribute it takes: numbers as exact decimal strings, integers as integers, dates in days; none for
operators without a measure, such as `in` or `contains`) and who can close it: the customer (`by_customer`),
only time (`with_time`: a tenure or an age still to come) or nobody (`no`: an age to fall below, a missing
value of a time-bound attribute).

`all` needs every member; `any` takes its cheapest member, the one with the fewest conditions nobody can
close, then the fewest unmet conditions, then the first in the document; a `not` that does not hold asks for
each comparison under it that holds to stop holding (no distance). Unknown values (null) count as unmet, as the
compiler's coalesce does.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from app.rules.attributes import AttributeType
from app.rules.compile import ExplainedLeaf
from app.rules.schema import (
    AllCondition,
    AlwaysCondition,
    AnyCondition,
    Comparison,
    Condition,
    NotCondition,
    Operator,
)

MOVES_ONLY_WITH_TIME = frozenset({"age", "tenure_months"})
"""Attributes no action of the customer's moves: they grow with time, one unit at a time."""

BY_CUSTOMER, WITH_TIME, NOBODY = "by_customer", "with_time", "no"


@dataclass(frozen=True)
class LeafGap:
    """One comparison: as evaluated, and what it would take."""

    pointer: str
    attribute: str
    operator: Operator
    threshold: Any
    value: Any
    met: bool | None
    distance: Any
    closable: str

    def as_dict(self, on_cheapest_path: bool) -> dict[str, Any]:
        return {
            "pointer": self.pointer,
            "attribute": self.attribute,
            "operator": self.operator,
            "threshold": self.threshold,
            "value": self.value,
            "met": self.met,
            "distance": self.distance,
            "closable": self.closable,
            "on_cheapest_path": on_cheapest_path,
        }


@dataclass
class _Cost:
    blocked: int = 0  # unmet comparisons nobody can close (`with_time` counts as closable, later)
    unmet: int = 0
    pointers: list[str] = field(default_factory=list)

    def key(self) -> tuple[int, int]:
        return self.blocked, self.unmet

    def plus(self, other: "_Cost") -> "_Cost":
        return _Cost(self.blocked + other.blocked, self.unmet + other.unmet, self.pointers + other.pointers)


@dataclass(frozen=True)
class ConditionGap:
    met: bool
    closable: str
    """How the cheapest way can be closed: by_customer, with_time (some of it only time closes) or no."""
    cheapest: list[str]
    """Pointers of the unmet comparisons on the cheapest way to qualify (empty when met)."""
    conditions: list[dict[str, Any]]
    """Every comparison of the condition in document order, each a LeafGap as a dict with on_cheapest_path."""


def condition_gap(
    condition: Condition, leaves: Sequence[ExplainedLeaf], facts: Sequence[tuple[Any, Any]], *, pointer: str = ""
) -> ConditionGap:
    """The gap of a condition from its explained leaves (compile_explanation of `condition` at `pointer`) and the
    recorded (value, result) of each leaf, in the same order; values as the facts hold them (JSON)."""
    if len(leaves) != len(facts):
        raise ValueError(f"{len(leaves)} leaves but {len(facts)} recorded facts")
    by_pointer = {
        leaf.pointer: _leaf_gap(leaf, value, result) for leaf, (value, result) in zip(leaves, facts, strict=True)
    }
    met, cost = _walk(condition, pointer, by_pointer)
    on_path = set(cost.pointers) if not met else set()
    closable = BY_CUSTOMER
    for p in on_path:
        if by_pointer[p].closable == NOBODY:
            closable = NOBODY
        elif by_pointer[p].closable == WITH_TIME and closable == BY_CUSTOMER:
            closable = WITH_TIME
    return ConditionGap(
        met=bool(met),
        closable=closable,
        cheapest=[p for p in by_pointer if p in on_path],
        conditions=[gap.as_dict(gap.pointer in on_path) for gap in by_pointer.values()],
    )


def _walk(node: Condition, pointer: str, leaves: dict[str, LeafGap]) -> tuple[bool | None, _Cost]:
    """(three-valued result, the cheapest cost of making it true)."""
    if isinstance(node, Comparison):
        gap = leaves[pointer]
        if gap.met:
            return True, _Cost()
        return gap.met, _Cost(blocked=int(gap.closable == NOBODY), unmet=1, pointers=[pointer])
    if isinstance(node, AlwaysCondition):
        return True, _Cost()
    if isinstance(node, AllCondition):
        results, total = [], _Cost()
        for i, member in enumerate(node.all):
            result, cost = _walk(member, f"{pointer}/all/{i}", leaves)
            results.append(result)
            total = total.plus(cost)
        met = False if False in results else (None if None in results else True)
        return met, (_Cost() if met else total)
    if isinstance(node, AnyCondition):
        results, best = [], None
        for i, member in enumerate(node.any):
            result, cost = _walk(member, f"{pointer}/any/{i}", leaves)
            results.append(result)
            if best is None or cost.key() < best.key():
                best = cost
        met = True if True in results else (None if None in results else False)
        return met, (_Cost() if met else best or _Cost())
    if isinstance(node, NotCondition):
        inner, _ = _walk(node.not_, f"{pointer}/not", leaves)
        met = None if inner is None else not inner
        if met:
            return True, _Cost()
        holding = [p for p in leaves if p.startswith(f"{pointer}/not") and leaves[p].met]
        blocked = sum(leaves[p].closable == NOBODY for p in holding)
        return met, _Cost(blocked=blocked, unmet=max(len(holding), 1), pointers=holding)
    raise TypeError(f"not a condition node: {type(node).__name__}")


def _leaf_gap(leaf: ExplainedLeaf, value: Any, result: Any) -> LeafGap:
    met = None if result is None else bool(result)
    distance = None if met else _distance(leaf, value)
    return LeafGap(
        pointer=leaf.pointer,
        attribute=leaf.attribute,
        operator=leaf.operator,
        threshold=leaf.threshold,
        value=value,
        met=met,
        distance=distance,
        closable=BY_CUSTOMER if met else _closable(leaf, value),
    )


def _closable(leaf: ExplainedLeaf, value: Any) -> str:
    if leaf.attribute not in MOVES_ONLY_WITH_TIME:
        return BY_CUSTOMER
    if value is not None and leaf.operator in (Operator.gte, Operator.gt, Operator.eq, Operator.between):
        try:
            if _number(value) <= _number(
                leaf.threshold if leaf.operator is not Operator.between else leaf.threshold[0]
            ):
                return WITH_TIME
        except (InvalidOperation, TypeError, ValueError):
            return NOBODY
    return NOBODY


def _number(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    return Decimal(str(value))


def _distance(leaf: ExplainedLeaf, value: Any) -> Any:
    """How far the value is from satisfying a measurable comparison; None when it has no measure or no value."""
    if value is None or leaf.attribute_type not in (AttributeType.number, AttributeType.integer, AttributeType.date):
        return None
    op = leaf.operator
    if op not in (Operator.gte, Operator.gt, Operator.lte, Operator.lt, Operator.eq, Operator.between):
        return None
    if leaf.attribute_type is AttributeType.date:
        current = date.fromisoformat(value).toordinal()
        if op is Operator.between:
            low, high = (date.fromisoformat(t).toordinal() for t in leaf.threshold)
        else:
            low = high = date.fromisoformat(leaf.threshold).toordinal()
        step: Decimal | int = 1
    else:
        current = _number(value)
        if op is Operator.between:
            low, high = (_number(t) for t in leaf.threshold)
        else:
            low = high = _number(leaf.threshold)
        step = 1 if leaf.attribute_type is AttributeType.integer else 0
    if op is Operator.gte:
        gap = low - current
    elif op is Operator.gt:
        gap = low + step - current
    elif op is Operator.lte:
        gap = current - high
    elif op is Operator.lt:
        gap = current - high + step
    elif op is Operator.eq:
        gap = abs(low - current)
    else:  # between
        gap = low - current if current < low else current - high
    if gap < 0:
        gap = 0
    if leaf.attribute_type is AttributeType.number:
        return format(gap, "f")
    return int(gap)
