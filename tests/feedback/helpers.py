"""Test helpers for feedback: customers through the API, and served recommendation items written directly (the
recommender that serves them lives in another domain)."""

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from app.customers.models import Customer
from app.recommendations.models import RecommendationItem, RecommendationList
from tests.factories import customer_body


async def make_customer(client, as_role, external_id: str, balance: str | None = None, **profile) -> None:
    response = await client.put(
        f"/v1/customers/{external_id}", json=customer_body(**profile), headers=as_role("integration")
    )
    assert response.status_code in (200, 201), response.text
    if balance is not None:
        response = await client.put(
            f"/v1/customers/{external_id}/holdings",
            headers=as_role("integration"),
            json={
                "holdings": [{"product_code": "savings_account", "balance": balance, "as_of": date.today().isoformat()}]
            },
        )
        assert response.status_code == 200, response.text


async def serve_items(
    session,
    external_id: str,
    products: list[str],
    *,
    strategy: str = "personalised",
    tier_code: str | None = "gold",
    channel: str = "mobile",
) -> list[uuid.UUID]:
    """A served list for the customer with one item per product; returns the items' recommendation ids."""
    customer_id = await session.scalar(select(Customer.id).where(Customer.external_id == external_id))
    served = RecommendationList(customer_id=customer_id, channel=channel, strategy=strategy, tier_code=tier_code)
    session.add(served)
    await session.flush()
    ids = [uuid.uuid4() for _ in products]
    session.add_all(
        RecommendationItem(
            recommendation_id=rid,
            list_id=served.id,
            customer_id=customer_id,
            product_code=code,
            tier_code=tier_code,
            rank=rank,
            score=Decimal("0.5"),
            propensity=Decimal("0.1"),
            strategy=strategy,
            reasons=[],
        )
        for rank, (rid, code) in enumerate(zip(ids, products, strict=True), start=1)
    )
    await session.commit()
    return ids


def event(event_id: str, recommendation_id, customer: str, type_: str, minutes_ago: int = 10, **extra) -> dict:
    when = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return {
        "event_id": event_id,
        "recommendation_id": str(recommendation_id),
        "customer_id": customer,
        "type": type_,
        "occurred_at": when.isoformat(),
        **extra,
    }
