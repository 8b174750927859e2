"""Engagement errors."""

from app.core.errors import Conflict, NotFound


class CommunityNotFound(NotFound):
    def __init__(self, key: str) -> None:
        super().__init__(f"no community '{key}'")


class ActivityNotFound(NotFound):
    def __init__(self, key: str) -> None:
        super().__init__(f"no activity '{key}'")


class MembershipNotFound(NotFound):
    def __init__(self, key: str) -> None:
        super().__init__(f"the customer has no place in '{key}'")


class InvalidMove(Conflict):
    def __init__(self, from_state: str, to_state: str) -> None:
        super().__init__(f"cannot move from {from_state} to {to_state}")
