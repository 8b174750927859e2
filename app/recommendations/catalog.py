"""The product catalog compiled for candidate selection (`CatalogSnapshot`): what ranking reads of each product,
and the statements that read or compute a customer's offer state (app/recommendations/offer_state.py) and give the
candidates (app/recommendations/queries.py)."""

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from pydantic_core import from_json
from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY, array
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from app.customers.models import Customer
from app.products.models import Product
from app.recommendations import offer_state, queries
from app.recommendations.models import CustomerOfferState
from app.recommendations.queries import Statement
from app.rules import (
    ExplainedLeaf,
    compile_condition,
    compile_explanation,
    features_for_customers,
    load_catalog,
    parse_condition,
)
from app.rules.attributes import RISK_VALID_DAYS, features_stable_until
from app.rules.facts import fact_value, facts_expression, json_array_expression
from app.rules.schema import AllCondition, AlwaysCondition, Comparison, Condition, referenced_attributes

FEATURE_COLUMNS = ("customer_id", "external_id", "held_products", "risk_tolerance", "marketing_consent")
# The catalog's version (app.products.models.CatalogVersion: triggers on products and custom attributes set it),
# read with every customer.
_CATALOG_VERSION = "(SELECT version FROM catalog_version)"


@dataclass(frozen=True, slots=True)
class CatalogProduct:
    """What ranking and the response read of a product, copied from its row when the catalog is compiled (a plain
    object: an ORM instance's attributes cost several times as much to read, and each request reads dozens)."""

    code: str
    name: str
    category: str
    risk_level: int
    value_weight: float
    lever: float
    target_tiers: tuple[str, ...]

    @classmethod
    def of(cls, product: Product) -> "CatalogProduct":
        return cls(
            code=product.code,
            name=product.name,
            category=product.category,
            risk_level=product.risk_level,
            value_weight=float(product.value_weight),
            lever=float(product.lever),
            target_tiers=tuple(product.target_tiers or ()),
        )


@dataclass(frozen=True)
class CatalogSnapshot:
    """The product catalog compiled for candidate selection: prepared statements that read a customer's offer state
    or compute it (the customer's features, every product's eligibility with the facts behind it) and give the
    candidates (with explain, every product with the first filter that removes it) and the catalog's version, so
    that a changed catalog is noticed without a round trip of its own."""

    products: dict[str, CatalogProduct]
    leaves: dict[str, list[ExplainedLeaf]]
    explained_attributes: tuple[str, ...]
    """The attributes conjunctions read: their values open the offer state's explanation, in this order."""
    with_facts: tuple[str, ...]
    """Products whose condition has `any` or `not`: their facts (each comparison's value and result) follow, in
    this order."""
    computing: Statement
    """Computes the customer's offer state and stores it, then gives the candidates (app/recommendations/
    queries.py); its parameters: the customer's external_id, the conditions' thresholds (bound), the candidates'."""
    reading: Statement
    """Reads the customer's offer state when one holds (else no row), then gives the candidates with the contact
    outcome stored with the state, if that holds (the row's `contact_known`)."""
    reading_contact: Statement
    """`reading`, counting the contact policy's outcomes and storing them with the state."""
    refreshing: Statement
    """Computes and stores the offer states of many customers (their ids)."""
    refreshing_for_ranker: Statement
    """`refreshing`, giving the states stored and their candidates among the learned ranker's products."""
    version: int

    def query(self, external_id: str, **candidates: Any) -> list[Any]:
        """`computing` with its arguments, as asyncpg's fetch takes them (`candidates`: the candidate part's)."""
        return self.computing.arguments(external_id=external_id, **candidates)

    def state_query(self, external_id: str, **candidates: Any) -> list[Any]:
        """`reading` with its arguments."""
        return self.reading.arguments(external_id=external_id, **candidates)

    def contact_query(self, external_id: str, **candidates: Any) -> list[Any]:
        """`reading_contact` with its arguments."""
        return self.reading_contact.arguments(external_id=external_id, **candidates)

    def explanation(self, document: str) -> "Explanation":
        """The offer state's explanation, from its JSON array (`explained_attributes`' values, then the facts of
        each product in `with_facts`)."""
        values = from_json(document)
        n = len(self.explained_attributes)
        return Explanation(
            values=dict(zip(self.explained_attributes, values[:n], strict=True)),
            facts=dict(zip(self.with_facts, values[n:], strict=True)),
        )


@dataclass(frozen=True, slots=True)
class Explanation:
    """What explains a customer's eligibility, from its offer state: the values of the attributes conjunctions read
    (as explanations show them: numbers as exact decimal strings), and the facts of every other condition."""

    values: dict[str, Any]
    facts: dict[str, list[Any]]


def _conjunction(condition: Condition) -> bool:
    """Whether the condition holds exactly when every comparison in it holds (comparisons under `all`s)."""
    if isinstance(condition, AllCondition):
        return all(_conjunction(member) for member in condition.all)
    return isinstance(condition, Comparison | AlwaysCondition)


@dataclass(frozen=True)
class _ComputedState:
    """A customer's offer state as SQL over a features relation (compiled once per form of the features)."""

    columns: list[Any]
    """The columns `offer_state.STORE_COMPUTED` stores, and the candidate part reads."""
    leaves: dict[str, list[ExplainedLeaf]]
    explained_attributes: tuple[str, ...]
    with_facts: tuple[str, ...]


def _computed_state(
    conditions: dict[str, Condition], catalog, features, customer, state, version: int
) -> _ComputedState:
    """The customer's offer state computed over `features` (the customer's row in `customer`, its stored state, if
    any, in `state`): the products whose eligibility does not hold, and what explains each eligibility (for a
    conjunction the values of the attributes it reads: each comparison held, if the customer is eligible; for a
    condition with `any` or `not` each comparison's value and result), with what storing the state needs."""
    leaves: dict[str, list[ExplainedLeaf]] = {}
    explained: dict[str, ColumnElement[Any]] = {}  # attribute: its value as explanations show it
    facts: dict[str, ColumnElement[Any]] = {}  # product: its condition's facts
    ineligible: list[Any] = []
    reads = set(offer_state.ALWAYS_READ)
    for i, (code, condition) in enumerate(conditions.items()):
        reads |= referenced_attributes(condition)
        leaves[code] = compile_explanation(condition, catalog, features, pointer="/eligibility", label_prefix=f"p{i}")
        eligible = compile_condition(condition, catalog, features)
        ineligible.append(sa.case((eligible.is_not(sa.true()), sa.literal(code, sa.Text())), else_=sa.null()))
        if _conjunction(condition):  # eligible means every comparison held: only the values are needed
            for leaf in leaves[code]:
                explained.setdefault(leaf.attribute, fact_value(leaf))
        else:
            facts[code] = facts_expression(leaves[code])
    columns = [
        *(features.c[name] for name in FEATURE_COLUMNS),
        (sa.func.array_remove(array(ineligible), None) if ineligible else sa.literal([], ARRAY(sa.Text()))).label(
            "ineligible"
        ),
        json_array_expression([*explained.values(), *facts.values()]).label("explanation"),
        sa.literal_column(_CATALOG_VERSION).label("catalog_version"),
        # what storing the state needs: the generation it read, the catalog it was compiled from, what it
        # reads, until when and under which risk validity it holds
        state.c.generation.label("offer_generation"),
        sa.literal(version, sa.BigInteger()).label("offer_catalog_version"),
        sa.literal(sorted(reads), ARRAY(sa.Text())).label("offer_reads"),
        features_stable_until(customer, features).label("offer_valid_until"),
        RISK_VALID_DAYS.label("offer_risk_valid_days"),
    ]
    return _ComputedState(columns, leaves, tuple(explained), tuple(facts))


async def build_snapshot(session: AsyncSession) -> CatalogSnapshot:
    """Compile the catalog into two statements, each then the candidates over the requested customer's offer state
    (app/recommendations/offer_state.py): one that reads the state when one holds, and one that computes it (the
    customer's features: the inlined customer_features_for, joined laterally to the customer found by external id)
    and stores it. Postgres prepares every node of a plan on each execution, the branches it does not run
    included; so reading a state is a statement without the computation. A third statement computes and stores
    the states of many customers at once (`refresh_offer_states`)."""
    version = await session.scalar(text(f"SELECT {_CATALOG_VERSION}"))
    products = {p.code: p for p in (await session.scalars(select(Product).order_by(Product.code))).all()}
    catalog = await load_catalog(session)
    conditions = {code: parse_condition(p.eligibility, "/eligibility") for code, p in products.items() if p.eligibility}
    dialect = session.get_bind().dialect
    state = CustomerOfferState.__table__.alias("s")

    requested = Customer.__table__.alias("requested")
    # Fenced (OFFSET 0): Postgres computes the customer's features once, in the sub-select, and the conditions read
    # its columns; inlined, every condition that reads `age` or `aum_avg_3m` recomputed that column's expression.
    features = (
        select(features_for_customers(array([requested.c.id])))
        .offset(sa.literal_column("0"))
        .lateral("customer_features")
    )
    one = _computed_state(conditions, catalog, features, requested, state, version)
    customer = Statement.compiled(
        "WITH computed AS (",
        select(*one.columns)
        .select_from(requested.join(features, sa.true()).outerjoin(state, state.c.customer_id == requested.c.id))
        .where(requested.c.external_id == bindparam("external_id", type_=sa.String()), requested.c.erased_at.is_(None)),
        dialect,
    )

    # many customers: their ids bound as one array (the function is inlined and planned with them)
    customers = Customer.__table__.alias("requested")
    many_features = features_for_customers(bindparam("ids", type_=ARRAY(sa.BigInteger())))
    many = _computed_state(conditions, catalog, many_features, customers, state, version)
    many_customers = Statement.compiled(
        "WITH computed AS (",
        select(*many.columns).select_from(
            many_features.join(customers, customers.c.id == many_features.c.customer_id).outerjoin(
                state, state.c.customer_id == many_features.c.customer_id
            )
        ),
        dialect,
    )
    return CatalogSnapshot(
        products={code: CatalogProduct.of(p) for code, p in products.items()},
        leaves=one.leaves,
        explained_attributes=one.explained_attributes,
        with_facts=one.with_facts,
        computing=queries.computing(customer),
        reading=queries.reading(),
        reading_contact=queries.reading_contact(),
        refreshing=queries.refreshing(many_customers),
        refreshing_for_ranker=queries.refreshing_for_ranker(many_customers),
        version=version,
    )
