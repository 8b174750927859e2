"""The rules domain's table: the custom attributes a bank declares, which conditions then reference."""

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base


class CustomAttributeDefinition(Base):
    """A typed custom attribute a bank declares; customers carry its values in `customer.attributes`."""

    __tablename__ = "custom_attribute_definition"
    __table_args__ = (
        CheckConstraint("type IN ('number', 'integer', 'string', 'boolean', 'date', 'string_set')", name="type"),
    )

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(Text, server_default=text("''"))
    unit: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
