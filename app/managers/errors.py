"""Errors of the managers domain; rendered as problem+json by the one handler in app.core.errors."""

from app.core.errors import Conflict, NotFound
from app.core.patching import ConflictsWithStored


class ManagerNotFound(NotFound):
    def __init__(self, manager_id: str) -> None:
        super().__init__(f"No relationship manager with id '{manager_id}'.", manager_id=manager_id)


class ManagerIdTaken(Conflict):
    def __init__(self, manager_id: str) -> None:
        super().__init__(f"A relationship manager with id '{manager_id}' already exists.", manager_id=manager_id)


class AssignmentRunNotFound(NotFound):
    def __init__(self, run_id: int) -> None:
        super().__init__(f"No assignment run with id {run_id}.", run_id=run_id)


class ContactNotFound(NotFound):
    def __init__(self, contact_id: int) -> None:
        super().__init__(f"No contact with id {contact_id} for this customer.", contact_id=contact_id)


class CapacityBelowLoad(ConflictsWithStored):
    """A PATCH's capacity below the customers the manager serves now (stored state: app/core/patching.py)."""

    def __init__(self, manager_id: str, load: int) -> None:
        super().__init__(
            "/capacity",
            f"Manager '{manager_id}' serves {load} customers now: capacity cannot go below that.",
            code="capacity_below_load",
            load=load,
        )


class ManagerFull(Conflict):
    def __init__(self, manager_id: str, capacity: int) -> None:
        super().__init__(
            f"Manager '{manager_id}' is at capacity ({capacity} customers).", code="manager_full", capacity=capacity
        )


class NotServed(Conflict):
    def __init__(self, manager_id: str) -> None:
        super().__init__(
            f"Manager '{manager_id}' does not serve any tier the customer holds now (or is inactive).",
            code="not_served",
        )
