"""Report tables: the indexes the reports need on other domains' tables (created by the satisfaction migration and
the ones after it: each report is one aggregation over an indexed range), the products' contribution margins and
the churn model's versions."""

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ARRAY,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.feedback.models import FeedbackEvent
from app.tiering.models import TierTransition

# tier-migrations: the moves of one policy in a time range. Transitions are appended in time order, so a BRIN
# index (a few pages, next to nothing to maintain) finds a range's blocks; a B-tree on (policy, at) slowed every
# transition's insert (bench/HISTORY.md), and a policy's first run writes one per customer.
TIER_TRANSITION_AT = Index("ix_tier_transition_at", TierTransition.at, postgresql_using="brin")

# recommendation-funnel: events in a time range, read from the index alone (an index-only scan)
FEEDBACK_EVENT_FUNNEL = Index(
    "ix_feedback_event_funnel",
    FeedbackEvent.occurred_at,
    postgresql_include=["recommendation_id", "kind", "product_code", "tier_code", "strategy"],
)


class ContributionMargin(Base):
    """What a product earns the bank (data the bank changes): an annual margin on the balance (a deposit's or a
    loan's interest spread, a fund's management fee) and a monthly fee. A customer's contribution is derived from
    their balances and these, unless the bank feeds its own figure (app/rules/attributes.py, contribution_monthly)."""

    __tablename__ = "contribution_margin"
    __table_args__ = (
        CheckConstraint("margin_rate BETWEEN -1 AND 1", name="margin_rate"),
        CheckConstraint("monthly_fee >= 0", name="monthly_fee"),
    )

    product_code: Mapped[str] = mapped_column(
        String(40), ForeignKey("product.code", ondelete="CASCADE"), primary_key=True
    )
    margin_rate: Mapped[Decimal] = mapped_column(Numeric(8, 6))
    monthly_fee: Mapped[Decimal] = mapped_column(Numeric(18, 2), server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ChurnModel(Base):
    """One fitted version of the churn-risk model (app/reports/churn.py): a logistic regression over the features
    in `features`, with its coefficients on their raw scale (the customer_features view scores with the newest
    version), what it was fitted on and how it did on the held-out months."""

    __tablename__ = "churn_model"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    features: Mapped[list[str]] = mapped_column(ARRAY(Text))
    intercept: Mapped[float] = mapped_column(Float(precision=53))
    coefficients: Mapped[list[float]] = mapped_column(ARRAY(Float(precision=53)))
    horizon_months: Mapped[int] = mapped_column(Integer)
    decline_share: Mapped[Decimal] = mapped_column(Numeric(4, 3))
    window_from: Mapped[date] = mapped_column(Date)
    window_until: Mapped[date] = mapped_column(Date)
    rows: Mapped[int] = mapped_column(Integer)
    positives: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    fitted_by: Mapped[str] = mapped_column(String(200))
    fitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
