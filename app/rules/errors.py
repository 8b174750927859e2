"""Errors of the rules domain (a condition's own errors are InvalidInput, pointing at its node)."""

from app.core.errors import Conflict


class AttributeDefinitionInUse(Conflict):
    pass
