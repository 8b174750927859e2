"""The learned ranker's table: every trained model version, with its window, features, held-out metrics and bytes."""

from datetime import date, datetime
from typing import Any

from sqlalchemy import CheckConstraint, Date, DateTime, Index, Integer, LargeBinary, String, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base

RANKER_STATUSES = ("candidate", "serving", "retired")


class RankerModel(Base):
    """One trained version. At most one is `serving` (a partial unique index: the database refuses a second);
    a version served before and replaced is `retired`, one never served is a `candidate`; either can be served
    again (rollback)."""

    __tablename__ = "ranker_model"
    __table_args__ = (
        CheckConstraint(f"status IN {RANKER_STATUSES}", name="status"),
        Index("uq_ranker_model_serving", "status", unique=True, postgresql_where=text("status = 'serving'")),
    )

    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(10))
    trained_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    trained_by: Mapped[str] = mapped_column(String(20))
    window_from: Mapped[date] = mapped_column(Date)
    """The first month whose adds were labels."""
    window_until: Mapped[date] = mapped_column(Date)
    """The last month whose adds were labels: the held-out month."""
    seed: Mapped[int] = mapped_column(Integer)
    features: Mapped[list[str]] = mapped_column(JSONB)
    products: Mapped[list[str]] = mapped_column(JSONB)
    """The products the model scores (the others are left to the rule-based score)."""
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB)
    model: Mapped[bytes] = mapped_column(LargeBinary)
    model_sha256: Mapped[str] = mapped_column(String(64))
    served_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
