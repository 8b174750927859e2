"""Errors of the webhooks domain; rendered as problem+json by the one handler in app.core.errors."""

from app.core.errors import NotFound


class WebhookNotFound(NotFound):
    def __init__(self, subscription_id: int) -> None:
        super().__init__(f"No webhook subscription with id {subscription_id}.", webhook_id=subscription_id)


class DeliveryNotFound(NotFound):
    def __init__(self, subscription_id: int, delivery_id: int) -> None:
        super().__init__(
            f"No delivery {delivery_id} of webhook subscription {subscription_id}.",
            webhook_id=subscription_id,
            delivery_id=delivery_id,
        )
