"""Errors of the benefits domain; rendered as problem+json by the one handler in app.core.errors."""

from app.core.errors import Conflict, NotFound


class BenefitNotFound(NotFound):
    def __init__(self, code: str) -> None:
        super().__init__(f"No benefit with code '{code}'.", code=code)


class BenefitCodeTaken(Conflict):
    def __init__(self, code: str) -> None:
        super().__init__(f"A benefit with code '{code}' already exists; codes are never reused.", code=code)


class BenefitUseNotFound(NotFound):
    def __init__(self, use_id: int) -> None:
        super().__init__(f"No benefit use with id {use_id} for this customer.", use_id=use_id)


class NotEntitled(Conflict):
    """The customer has no tier (or meets no condition) that gives the benefit now."""

    def __init__(self, code: str) -> None:
        super().__init__(
            f"The customer is not entitled to benefit '{code}' now: no tier they hold gives it, its extra "
            "condition does not hold, or it is outside its validity window.",
            code="not_entitled",
            benefit_code=code,
        )


class UsageLimitReached(Conflict):
    def __init__(self, code: str, limit: int, period: str, period_end: str) -> None:
        super().__init__(
            f"Benefit '{code}' is used up for this {period}: {limit} of {limit} used; it renews on {period_end}.",
            code="limit_reached",
            benefit_code=code,
            limit=limit,
            period=period,
            renews_on=period_end,
        )
