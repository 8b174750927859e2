"""Errors of the rules domain (a condition's own errors are InvalidInput, pointing at its node)."""

from app.core.errors import Conflict


class AttributeDefinitionInUse(Conflict):
    """A custom attribute's type changed while customers carry it or rules read it: a conflict with what is stored."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, errors=[{"location": "body", "pointer": "/type", "detail": detail}])


class AttributeNameTaken(Conflict):
    """A custom attribute named like a built-in one: the name is taken in the catalog, as any duplicate name is."""

    def __init__(self, name: str) -> None:
        detail = f"'{name}' is a built-in attribute (GET /v1/attributes)"
        super().__init__(detail, errors=[{"location": "path", "parameter": "name", "detail": detail}])
