"""The recommendation tests' product catalog, as the `bank` fixture adds it."""

import pytest

from app.products.models import Product

CATALOG = [
    # code, category, risk, channels, eligibility, is_service
    ("current_account", "deposit", 1, ["mobile", "web"], None, False),
    ("savings_account", "deposit", 1, ["mobile", "web"], None, False),
    ("term_deposit", "deposit", 1, ["mobile"], None, False),
    ("bond_fund", "fund", 2, ["mobile", "web"], None, False),
    ("balanced_fund", "fund", 3, ["mobile", "web"], None, False),
    ("equity_fund", "fund", 4, ["mobile", "web"], None, False),
    ("structured_note", "wealth", 5, ["mobile", "rm"], None, False),
    ("platinum_card", "card", 1, ["mobile"], {"attr": "aum_avg_3m", "op": "gte", "value": 100000}, False),
    ("business_loan", "loan", 2, ["mobile"], {"attr": "segment", "op": "eq", "value": "small_business"}, False),
    ("maturity_notice", "deposit", 1, ["mobile"], None, True),
]


@pytest.fixture
async def bank(session):
    session.add_all(
        Product(
            code=code,
            name=code.replace("_", " ").title(),
            category=category,
            risk_level=risk,
            channels=channels,
            eligibility=eligibility,
            is_service=service,
        )
        for code, category, risk, channels, eligibility, service in CATALOG
    )
    await session.commit()
