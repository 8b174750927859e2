"""The demo bank's shared pieces: the shipped product catalog, the tables and columns the demo writes
(DemoRecords), the calendar every row's dates come from, and money in cents. The population is drawn in
app/demo_records.py; the older monthly history and the raw events in app/demo_history.py.
"""

import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

DEFAULT_PRODUCTS_FILE = Path(__file__).parent / "defaults" / "products.json"
EXTERNAL_ID_PREFIX = "C"
EXTERNAL_ID_DIGITS = 8

HISTORY_MONTHS = 12  # month-end holdings reported for the last twelve months

# Table, columns: what each COPY writes (in load order: customers before everything that refers to them).
COPY_COLUMNS: dict[str, tuple[str, ...]] = {
    "customer": (
        "id",
        "external_id",
        "segment",
        "display_name",
        "birth_date",
        "onboarded_at",
        "risk_level",
        "risk_assessed_at",
        "marketing_consent",
        "last_txn_at",
    ),
    "holding": ("customer_id", "product_code", "opened_at", "balance", "as_of"),
    "holding_balance": ("customer_id", "product_code", "as_of", "balance"),
    "customer_aum_daily": ("customer_id", "day", "aum"),
    "customer_activity_daily": ("customer_id", "day", "txn_count", "txn_amount", "logins", "referrals"),
    "customer_event": ("customer_id", "event_id", "kind", "occurred_at", "amount", "direction", "channel"),
}


def default_products() -> list[dict[str, Any]]:
    """The shipped product catalog (app/defaults/products.json) as product rows, money and weights as Decimal."""
    rows = []
    for item in json.loads(DEFAULT_PRODUCTS_FILE.read_text()):
        rows.append(
            {
                "code": item["product_code"],
                "name": item["name"],
                "category": item["category"],
                "risk_level": int(item["risk_level"]),
                "min_amount": Decimal(item.get("min_amount", "0")),
                "channels": list(item["channels"]),
                "value_weight": Decimal(item.get("value_weight", "1")),
                "lever": Decimal(item.get("lever", "1")),
                "target_tiers": list(item.get("target_tiers", [])),
                "eligibility": item.get("eligibility"),
                "is_service": bool(item.get("is_service", False)),
                "description": item.get("description", ""),
            }
        )
    return rows


@dataclass(slots=True)
class DemoRecords:
    """Rows for each table, as tuples in COPY_COLUMNS order."""

    customer: list[tuple] = field(default_factory=list)
    holding: list[tuple] = field(default_factory=list)
    holding_balance: list[tuple] = field(default_factory=list)
    customer_aum_daily: list[tuple] = field(default_factory=list)
    customer_activity_daily: list[tuple] = field(default_factory=list)
    customer_event: list[tuple] = field(default_factory=list)

    def tables(self) -> Iterator[tuple[str, tuple[str, ...], list[tuple]]]:
        for table, columns in COPY_COLUMNS.items():
            yield table, columns, getattr(self, table)

    def counts(self) -> dict[str, int]:
        return {table: len(rows) for table, _, rows in self.tables()}


class DemoCalendar:
    """Dates relative to `today`, built once per chunk and shared by every row (one date object per day)."""

    def __init__(self, today: date) -> None:
        self.today = today
        self.midnight = datetime(today.year, today.month, today.day, tzinfo=UTC)
        self._recent = [today - timedelta(days=n) for n in range(400)]
        # The balance history: the last three month-ends; today's balances are the holdings themselves.
        month_ends, cursor = [], today.replace(day=1)
        for _ in range(3):
            cursor -= timedelta(days=1)
            month_ends.append(cursor)
            cursor = cursor.replace(day=1)
        self.snapshots = [(day, (today - day).days, (today - day).days / 30.44) for day in reversed(month_ends)]
        # Older month-ends (4 .. HISTORY_MONTHS months back), oldest first: the monthly history a learned ranker
        # trains on, drawn from a stream of its own so that the three months above stay as they were.
        older = []
        for _ in range(HISTORY_MONTHS - 3):
            cursor -= timedelta(days=1)
            older.append(cursor)
            cursor = cursor.replace(day=1)
        self.older_snapshots = [(day, (today - day).days) for day in reversed(older)]
        self.month_ends = [day for day, _ in self.older_snapshots] + [day for day, _, _ in self.snapshots]

    def day(self, days_ago: int) -> date:
        return self._recent[days_ago] if days_ago < 400 else date.fromordinal(self.today.toordinal() - days_ago)

    def moment(self, days_ago: int, second_of_day: int) -> datetime:
        return self.midnight - timedelta(days=days_ago, seconds=-second_of_day)


def customer_external_id(number: int) -> str:
    return f"{EXTERNAL_ID_PREFIX}{number:0{EXTERNAL_ID_DIGITS}d}"


def credit_balance_cents(rng: random.Random, code: str) -> int:
    """Outstanding balance of a loan or card, in cents."""
    r = rng.random
    if code == "mortgage":
        return max(1_000_000, int(rng.lognormvariate(math.log(160_000), 0.6) * 100))
    if code == "personal_loan":
        return int((1_000 + 29_000 * r()) * 100)
    if code == "auto_loan":
        return int((5_000 + 35_000 * r()) * 100)
    if code == "sme_credit_line":
        return int(250_000 * r() ** 2 * 100)
    limit = {"credit_card_classic": 3_000, "credit_card_gold": 6_000, "credit_card_platinum": 15_000}[code]
    return int(limit * r() ** 1.5 * 100)


def money_of_cents(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)
