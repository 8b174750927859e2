"""Errors of the customers domain."""

from app.core.errors import NotFound


class CustomerNotFound(NotFound):
    def __init__(self, external_id: str) -> None:
        super().__init__(f"No customer with external_id '{external_id}'.")
