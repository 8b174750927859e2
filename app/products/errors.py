"""Errors the product catalog raises; rendered as problem+json by the one handler in app.core.errors."""

from app.core.errors import Conflict, NotFound


class ProductNotFound(NotFound):
    def __init__(self, code: str) -> None:
        super().__init__(f"No product with code '{code}'.", code=code)


class ProductCodeTaken(Conflict):
    def __init__(self, code: str) -> None:
        super().__init__(f"A product with code '{code}' already exists; codes are never reused.", code=code)


class QuotaNotFound(NotFound):
    def __init__(self, code: str) -> None:
        super().__init__(f"Product '{code}' has no quota.", code=code)
