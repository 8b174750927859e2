"""Recommendation tables: served lists (their items in arrays), propensity statistics, co-holding statistics and the
contact policy."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base


class RecommendationList(Base):
    """One served list and its items: what a customer was shown, when, on which channel and by which strategy, each
    item's product, score, propensity and reasons in arrays by rank (rank 1 first). One row a list, so a list costs
    the database one heap tuple and two B-tree insertions (the key and `id`), where a row per item cost about 11.

    `id` is a UUID version 7 with its last 4 bits zero; the recommendation_id of the item at rank r (1..15) is `id`
    with r in those bits (app/recommendations/served.py: `item_ids`), so the feedback intake finds an item's list by
    the id with those bits cleared (one index) and the item by the rank they hold. Lists converted from the former
    row-per-item store keep their items' own ids, by rank, in `legacy_ids` (NULL for every list served since), found
    by a partial GIN index that new lists do not pay. The view recommendation_item shows a row per item, as the
    former table did, for readers (not written).

    Written by one statement (app/recommendations/served.py), which takes the customer's id from the request's own
    read; customers are never deleted (erasure anonymises the row and clears the reasons) and neither are lists, so
    no foreign keys (each checked nothing that statement could get wrong, and locked a row on every list served).
    Partitioned by month of served_at (app/core/partitions.py), so the key carries it."""

    __tablename__ = "recommendation_list"
    __table_args__ = (
        PrimaryKeyConstraint("customer_id", "id", "served_at"),
        CheckConstraint("strategy IN ('personalised', 'holdout_popularity')", name="strategy"),
        Index("ix_recommendation_list_id", "id"),
        Index(
            "ix_recommendation_list_legacy_ids",
            "legacy_ids",
            postgresql_using="gin",
            postgresql_where=text("legacy_ids IS NOT NULL"),
        ),
        {"postgresql_partition_by": "RANGE (served_at)"},
    )

    id: Mapped[Any] = mapped_column(UUID(as_uuid=True))
    customer_id: Mapped[int] = mapped_column(BigInteger)
    channel: Mapped[str] = mapped_column(String(20))
    strategy: Mapped[str] = mapped_column(String(20))
    tier_code: Mapped[str | None] = mapped_column(String(40))
    served_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    product_codes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    """The items' products (catalog codes: products are deactivated, never deleted), by rank."""
    scores: Mapped[list[Decimal]] = mapped_column(ARRAY(Numeric(12, 6)))
    propensities: Mapped[list[Decimal]] = mapped_column(ARRAY(Numeric(8, 6)))
    reasons: Mapped[list[list[dict[str, Any]]]] = mapped_column(JSONB)
    """A JSON array: each item's reasons (a JSON array), by rank; an erasure empties each."""
    legacy_ids: Mapped[list[Any] | None] = mapped_column(ARRAY(UUID(as_uuid=True)))


class CustomerOfferState(Base):
    """What the candidate filter needs of one customer, as of its last computation: the products held, the risk
    tolerance, marketing consent, the products whose eligibility condition does not hold and the values that explain
    the others. A recommendation reads this row instead of computing the customer's features and every product's
    eligibility again (app/recommendations/offer_state.py).

    It is used only while it is exactly what a computation now would give: the catalog version and the risk
    validity it was computed with still stand, and `valid_until` (the next midnight, the next month of tenure or
    the expiry of the risk assessment, whichever comes first) has not passed. Every write to the customer's
    data bumps `generation` in the writing transaction, and makes the state stale when it changes one of the
    attributes the state `reads`; a computation stores its state only if the generation is still the one it read,
    so one that read before a write cannot store what the write changed. A stale row keeps no personal value.

    A cache of what the customer's data already says, so UNLOGGED: its writes cost no WAL, and a crash empties it,
    which only means computing each customer's state once more. No foreign key: customers are never deleted
    (erasure anonymises the row), and a key would lock the customer's row on every state stored."""

    __tablename__ = "customer_offer_state"
    __table_args__ = {"prefixes": ["UNLOGGED"]}

    customer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger)
    valid_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    catalog_version: Mapped[int | None] = mapped_column(BigInteger)
    risk_valid_days: Mapped[int | None] = mapped_column(Integer)
    held_products: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    risk_tolerance: Mapped[int | None] = mapped_column(SmallInteger)
    marketing_consent: Mapped[bool | None] = mapped_column(Boolean)
    ineligible: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    explanation: Mapped[list[Any] | None] = mapped_column(JSONB)
    """A JSON array: the values (as explanations show them) of the attributes that conjunctions read, then each
    other condition's facts (app.rules.facts.facts_expression), in the order of the compiled catalog
    (app.recommendations.catalog.CatalogSnapshot.explanation)."""
    reads: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    """The attributes the state depends on: those the catalog's conditions read, the products held, the risk
    tolerance and the marketing consent."""
    ranker_version: Mapped[int | None] = mapped_column(Integer)
    """The learned ranker's version that scored this state (app/recommendations/learned/serving.py); NULL: not
    scored (no model serving, or the state computed since): the rule-based propensity ranks."""
    ranker_products: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    """The products the model scored, in the order of the two arrays below."""
    ranker_propensities: Mapped[list[float] | None] = mapped_column(ARRAY(Float(53)))
    """The model's calibrated P(adds the product next month), per product of ranker_products."""
    ranker_reasons: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    """The reason code of each product's top feature contribution (app/defaults/reason_texts.json)."""
    contact_generation: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    """Moved on, and the contact outcome below cleared, by every write to what the contact policy counts of the
    customer (feedback, programme invitations, managers' contacts: statement triggers, migration d3c0ffee0059),
    in the writing transaction: an outcome is stored only at the generation its count read."""
    contact_policy: Mapped[int | None] = mapped_column(BigInteger)
    """The contact policy's version (`ContactPolicyVersion`) the stored outcome was counted under."""
    contact_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    contact_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """The stored contact outcome holds for a request's `now` in [contact_from, contact_until): counted at
    contact_from, until the first counted outcome leaves a rule's window or its rest ends (NULL: none stored)."""
    contact_keys: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    """What the contact policy suppresses: 'product:<code>' or 'category:<name>' (NULL: nothing)."""
    contact_rules: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    """The first rule (by name) suppressing each of contact_keys."""


class PropensityStat(Base):
    """Feedback counts per (product, tier), spread over shards so concurrent intake never queues on one row.
    A product's counts are the sum over its shards."""

    __tablename__ = "propensity_stat"

    product_code: Mapped[str] = mapped_column(String(40), primary_key=True)
    tier_code: Mapped[str] = mapped_column(String(40), primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    impressions: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    clicks: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    accepts: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    dismisses: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    converts: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class ProductHoldingStat(Base):
    """Refreshed by a job: how many customers hold a product, overall and within each tier of the primary policy."""

    __tablename__ = "product_holding_stat"

    product_code: Mapped[str] = mapped_column(String(40), primary_key=True)
    tier_code: Mapped[str] = mapped_column(String(40), primary_key=True)  # '*' for all customers
    holders: Mapped[int] = mapped_column(BigInteger)
    customers: Mapped[int] = mapped_column(BigInteger)
    refreshed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CoHoldingStat(Base):
    """Refreshed by a job: customers holding both `held` and `product` (and how many hold `held`)."""

    __tablename__ = "co_holding_stat"

    held_code: Mapped[str] = mapped_column(String(40), primary_key=True)
    product_code: Mapped[str] = mapped_column(String(40), primary_key=True)
    holding_both: Mapped[int] = mapped_column(BigInteger)
    held_total: Mapped[int] = mapped_column(BigInteger)
    refreshed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ContactRule(Base):
    """After `threshold` outcomes of `outcome` within `window_days`, for the same product (or category), on the
    channel (or any), suppress offers of it for `suppress_days`. Service products are exempt. Programme invitations and
    managers' declined contacts are outcomes of no product: they count in every category (app/recommendations/
    queries.py)."""

    __tablename__ = "contact_rule"
    __table_args__ = (
        CheckConstraint("outcome IN ('ignored_impression', 'dismiss')", name="outcome"),
        CheckConstraint("scope IN ('product', 'category')", name="scope"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    outcome: Mapped[str] = mapped_column(String(20))
    threshold: Mapped[int] = mapped_column(Integer)
    window_days: Mapped[int] = mapped_column(Integer)
    scope: Mapped[str] = mapped_column(String(10))
    channel: Mapped[str | None] = mapped_column(String(20))
    suppress_days: Mapped[int] = mapped_column(Integer)
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ContactPolicyVersion(Base):
    """One row: the contact policy's version. A statement trigger on contact_rule (and a TRUNCATE of what the policy
    counts, or the retention dropping feedback) sets it from a sequence in the writing transaction (migration
    d3c0ffee0059): a contact outcome stored with an offer state under another version no longer holds."""

    __tablename__ = "contact_policy_version"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


class RecommendationFallback(Base):
    """One row: the service message a recommendation response carries instead of an empty list, when `enabled`
    (its words by language, picked as reason texts are: app/core/i18n.py)."""

    __tablename__ = "recommendation_fallback"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    code: Mapped[str] = mapped_column(String(40))
    texts: Mapped[dict[str, Any]] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
