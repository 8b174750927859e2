"""Test helpers for feedback: customers through the API, and served lists written directly (the recommender
that serves them lives in another domain)."""

import uuid
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select

from app.customers.models import Customer
from tests.factories import customer_body, serve_list


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
    ids = await serve_list(session, customer_id, products, channel=channel, strategy=strategy, tier_code=tier_code)
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
