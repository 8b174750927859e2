"""Customer operations: upsert, read with metrics, erase, holdings and event intake."""

import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam, delete, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InvalidFields, InvalidInput
from app.core.patching import Patch
from app.customers.errors import CustomerNotFound
from app.customers.locks import lock_customers
from app.customers.models import (
    Customer,
    CustomerActivityDaily,
    CustomerAumDaily,
    CustomerErasure,
    CustomerEvent,
    CustomerExternalId,
    Holding,
    HoldingBalance,
    HoldingImportLine,
)
from app.customers.schemas import CustomerPatch, CustomerUpsert, HoldingIn
from app.products.models import Product
from app.rules import features_for_customers, features_sql
from app.rules.custom_attributes import attribute_errors, attribute_types

# Product categories that count as assets under management (loans and cards are owed, not held).
AUM_CATEGORIES = ("deposit", "wealth", "fund", "insurance")
METRIC_COLUMNS = (
    "aum",
    "aum_avg_3m",
    "aum_trend_3m",
    "deposit_balance",
    "investment_balance",
    "loan_balance",
    "products_held_count",
    "held_products",
    "held_categories",
    "tenure_months",
    "age",
    "txn_count_90d",
    "txn_amount_90d",
    "days_since_last_txn",
    "logins_30d",
    "referrals_12m",
    "risk_tolerance",
)

# The metrics each kind of write can move: a write re-tiers customers only under policies that read one of them.
HOLDING_METRICS = features_sql.CURRENT.moved_by(features_sql.HOLDINGS)
ACTIVITY_METRICS = features_sql.CURRENT.moved_by(features_sql.ACTIVITY)

PROFILE_FIELDS = (
    "segment",
    "display_name",
    "birth_date",
    "onboarded_at",
    "risk_level",
    "risk_assessed_at",
    "marketing_consent",
    "attributes",
)


def clean_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v is not None}


# ---- profile -----------------------------------------------------------------------------------------------


async def upsert_customer(session: AsyncSession, external_id: str, body: CustomerUpsert) -> tuple[int, bool]:
    """Create or replace a customer's profile; (customer id, True when it was created)."""
    if errors := attribute_errors(body.attributes, await attribute_types(session)):
        raise InvalidFields(errors)
    values = body.model_dump(include=set(PROFILE_FIELDS))
    values["attributes"] = clean_attributes(values["attributes"])
    stmt = insert(Customer).values(id=_claimed_id(external_id), external_id=external_id, **values)
    stmt = stmt.on_conflict_do_update(index_elements=["id"], set_={**values, "updated_at": func.now()})
    customer_id, created = (await session.execute(stmt.returning(Customer.id, literal_column("xmax = 0")))).one()
    return customer_id, bool(created)


def _claimed_id(external_id: str):
    """The customer id of an external id, claimed in customer_external_id (what holds external ids unique): the id
    it names already, its row then locked until commit (an erasure deletes the row first: one erased meanwhile is
    not found, and is claimed anew), else a new id from customer's sequence (a concurrent creation of the same id
    waits for this one and gets the same customer). A known id draws nothing from the sequence: the insert's row is
    filtered out before its `nextval` is evaluated."""
    known = (
        select(CustomerExternalId.customer_id)
        .where(CustomerExternalId.external_id == external_id)
        .with_for_update()
        .cte("known")
    )
    new_id = func.nextval(func.pg_get_serial_sequence("customer", "id"))
    claim = insert(CustomerExternalId).from_select(
        ["external_id", "customer_id"],
        select(sa.literal(external_id), new_id).where(~select(known.c.customer_id).exists()),
    )
    claim = claim.on_conflict_do_update(
        index_elements=["external_id"], set_={"customer_id": CustomerExternalId.customer_id}
    )
    claimed = claim.returning(CustomerExternalId.customer_id).cte("claimed")
    return sa.union_all(select(known.c.customer_id), select(claimed.c.customer_id)).scalar_subquery()


async def _customer_row(session: AsyncSession, external_id: str, *, for_update: bool = False) -> Customer:
    query = select(Customer).where(Customer.external_id == external_id, Customer.erased_at.is_(None))
    if for_update:
        query = query.with_for_update()
    customer = await session.scalar(query)
    if customer is None:
        raise CustomerNotFound(external_id)
    return customer


async def lock_customer(session: AsyncSession, external_id: str) -> bool:
    """Lock the customer's row for this transaction (before a conditional write reads it); False when none."""
    query = select(Customer.id).where(Customer.external_id == external_id, Customer.erased_at.is_(None))
    return await session.scalar(query.with_for_update()) is not None


async def customer_id_of(session: AsyncSession, external_id: str) -> int:
    customer_id = await session.scalar(
        select(Customer.id).where(Customer.external_id == external_id, Customer.erased_at.is_(None))
    )
    if customer_id is None:
        raise CustomerNotFound(external_id)
    return customer_id


def _customer_with_metrics():
    features = features_for_customers(
        sa.func.array(select(Customer.id).where(Customer.external_id == bindparam("external_id")).scalar_subquery())
    )
    return select(Customer, *(features.c[name] for name in METRIC_COLUMNS)).join(
        features, features.c.customer_id == Customer.id
    )


async def get_customer(session: AsyncSession, external_id: str) -> tuple[Customer, dict[str, Any]]:
    """The profile and its derived metrics, in one query (aggregating this customer's rows only)."""
    row = (await session.execute(_customer_with_metrics(), {"external_id": external_id})).first()
    if row is None:
        raise CustomerNotFound(external_id)
    customer, *metrics = row
    return customer, dict(zip(METRIC_COLUMNS, metrics, strict=True))


async def patch_customer(session: AsyncSession, external_id: str, body: CustomerPatch) -> int:
    customer = await _customer_row(session, external_id, for_update=True)
    patch = Patch.of(customer, body)
    changes = patch.changes
    for required in ("segment", "onboarded_at", "marketing_consent"):
        if required in changes and changes[required] is None:
            raise InvalidInput(f"/{required}", "may not be null")
    if "attributes" in changes:
        attributes = changes["attributes"] or {}
        if errors := attribute_errors(attributes, await attribute_types(session)):
            raise InvalidFields(errors)
        changes["attributes"] = clean_attributes({**customer.attributes, **attributes})
    if patch["risk_level"] is not None and patch["risk_assessed_at"] is None:
        reads = ("risk_level", "risk_assessed_at")
        raise patch.refusal("/risk_assessed_at", "is required when risk_level is set", reads=reads)
    for field, value in changes.items():
        setattr(customer, field, value)
    customer.updated_at = datetime.now(UTC)
    await session.flush()
    return customer.id


def erasure_token(external_id: str, secret: str) -> str:
    """What is kept of an erased external id (customer_erasure.token): keyed, so it cannot be reversed by guessing
    ids, and the same for every erasure of that id, so that a repeated erasure is recognised."""
    return hmac.new(secret.encode(), external_id.encode(), hashlib.sha256).hexdigest()[:40]


def erased_external_id() -> str:
    """What an erased row's external_id becomes: random, so that it is unique however often an external id is
    erased and created again, links no two erased rows, and is no id a client could have chosen by guessing."""
    return "erased:" + secrets.token_hex(20)


async def erase_customer(session: AsyncSession, external_id: str, secret: str) -> int | None:
    """Right to erasure of the customers domain's data: personal fields, holdings, balances and events go; an
    anonymous row stays so that counts in reports do not change. Returns the customer's id, or None when it was
    erased before (erasing again succeeds, also after the id was created and erased again any number of times).
    What other domains hold of it: app.customers.flows.erase_customer."""
    token = erasure_token(external_id, secret)
    mapped = select(CustomerExternalId.customer_id).where(CustomerExternalId.external_id == external_id)
    customer_id = await session.scalar(mapped.with_for_update())  # first, as its creators lock it
    customer = await session.scalar(
        select(Customer).where(Customer.id == customer_id, Customer.erased_at.is_(None)).with_for_update()
    )
    if customer is None:
        if await session.scalar(select(CustomerErasure.token).where(CustomerErasure.token == token)) is None:
            raise CustomerNotFound(external_id)
        return None
    await lock_customers(session, [customer.id])  # a batch chunk evaluating this customer finishes first
    for model in (Holding, HoldingBalance, CustomerAumDaily, CustomerActivityDaily, CustomerEvent):
        await session.execute(delete(model).where(model.customer_id == customer.id))
    erased_id = erased_external_id()
    await session.execute(delete(CustomerExternalId).where(CustomerExternalId.external_id == external_id))
    await session.execute(insert(CustomerExternalId).values(external_id=erased_id, customer_id=customer.id))
    await session.execute(
        update(Customer)
        .where(Customer.id == customer.id)
        .values(
            external_id=erased_id,
            display_name=None,
            birth_date=None,
            attributes={},
            risk_level=None,
            risk_assessed_at=None,
            marketing_consent=False,
            last_txn_at=None,
            onboarded_at=func.date_trunc("year", Customer.onboarded_at),
            erased_at=func.now(),
            updated_at=func.now(),
        )
    )
    erasure = insert(CustomerErasure).values(token=token)
    await session.execute(erasure.on_conflict_do_update(index_elements=["token"], set_={"erased_at": func.now()}))
    await session.flush()
    return customer.id


async def list_customers(
    session: AsyncSession,
    *,
    after_id: int | None,
    limit: int,
    segment: str | None = None,
    risk_level: int | None = None,
    extra_filters=(),
) -> list[Customer]:
    query = select(Customer).where(Customer.erased_at.is_(None)).order_by(Customer.id).limit(limit + 1)
    if after_id is not None:
        query = query.where(Customer.id > after_id)
    if segment is not None:
        query = query.where(Customer.segment == segment)
    if risk_level is not None:
        query = query.where(Customer.risk_level == risk_level)
    for condition in extra_filters:
        query = query.where(condition)
    return list((await session.scalars(query)).all())


# ---- holdings ----------------------------------------------------------------------------------------------


async def get_holdings(session: AsyncSession, external_id: str) -> list[Holding]:
    customer_id = await customer_id_of(session, external_id)
    return list(
        await session.scalars(select(Holding).where(Holding.customer_id == customer_id).order_by(Holding.product_code))
    )


async def replace_holdings(
    session: AsyncSession, external_id: str, holdings: list[HoldingIn]
) -> tuple[int, list[HoldingIn], list[Holding]]:
    """Replace the customer's product set; record each balance in the history and the day's AUM snapshot.
    Returns the customer's id, the holdings of products the customer did not hold before, and the holdings."""
    customer = await _customer_row(session, external_id, for_update=True)
    categories = dict(
        (
            await session.execute(
                select(Product.code, Product.category).where(Product.code.in_([h.product_code for h in holdings]))
            )
        ).all()
    )
    errors = [
        {"pointer": f"/holdings/{i}/product_code", "detail": f"unknown product '{h.product_code}'"}
        for i, h in enumerate(holdings)
        if h.product_code not in categories
    ]
    if errors:
        raise InvalidFields(errors)
    codes = [h.product_code for h in holdings]
    held_before = set(
        (await session.scalars(select(Holding.product_code).where(Holding.customer_id == customer.id))).all()
    )
    await session.execute(delete(Holding).where(Holding.customer_id == customer.id, Holding.product_code.not_in(codes)))
    if holdings:
        rows = [{"customer_id": customer.id, **h.model_dump()} for h in holdings]
        stmt = insert(Holding).values(rows)
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=["customer_id", "product_code"],
                set_={
                    "opened_at": stmt.excluded.opened_at,
                    "balance": stmt.excluded.balance,
                    "as_of": stmt.excluded.as_of,
                },
            )
        )
        history = insert(HoldingBalance).values(
            [
                {"customer_id": customer.id, "product_code": h.product_code, "as_of": h.as_of, "balance": h.balance}
                for h in holdings
            ]
        )
        await session.execute(
            history.on_conflict_do_update(
                index_elements=["customer_id", "product_code", "as_of"], set_={"balance": history.excluded.balance}
            )
        )
    day = max((h.as_of for h in holdings), default=datetime.now(UTC).date())
    aum = sum((h.balance for h in holdings if categories[h.product_code] in AUM_CATEGORIES), Decimal("0"))
    snapshot = insert(CustomerAumDaily).values(customer_id=customer.id, day=day, aum=aum)
    await session.execute(snapshot.on_conflict_do_update(index_elements=["customer_id", "day"], set_={"aum": aum}))
    # The customer row is left as it is: updated_at is the profile's last change (what PUT/PATCH /v1/customers/{id}
    # write). Holdings carry their own as_of; GET /v1/customers/{id}'s metrics (and so its ETag) follow them.
    await session.flush()
    opened = [h for h in holdings if h.product_code not in held_before]
    return (
        customer.id,
        opened,
        list(
            await session.scalars(
                select(Holding).where(Holding.customer_id == customer.id).order_by(Holding.product_code)
            )
        ),
    )


async def erase_import_lines(session: AsyncSession, customer_id: int, external_id: str) -> None:
    """Erasure: the customer's lines staged by holdings imports go (merged ones are gone already)."""
    await session.execute(
        delete(HoldingImportLine).where(
            sa.or_(HoldingImportLine.customer_id == customer_id, HoldingImportLine.external_id == external_id)
        )
    )
