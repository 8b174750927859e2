"""A PATCH against what is stored: one rule for every edited document (RFC 5789 section 2.2).

A PATCH's fields are checked alone by its body model (422 naming the field, like any body). A rule across fields,
or between a field and state the document keeps (places given, members, load), is checked on the document the
PATCH would make: the body's fields over the stored ones (`Patch`). When the PATCH sends every field the broken
rule reads, the PATCH alone breaks it: 422, as for a create. When the rule also reads a stored value, the PATCH is
valid on its own and conflicts with the document's current state: 409 problem+json naming the field
(`ConflictsWithStored`), which a client resolves by reading the document again, as it would a 412.

    patch = Patch.of(activity, body)
    if patch["ends_at"] <= patch["starts_at"]:
        raise patch.refusal("/ends_at", "must be after starts_at", reads=("starts_at", "ends_at"))

Creates and replacing PUTs pass no patch to the same checks (`refusal(None, ...)`): their body is the whole
document, so a broken rule is always the body's (422)."""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from app.core.errors import AppError, Conflict, InvalidInput


class ConflictsWithStored(Conflict):
    """409: the PATCH is valid alone, but with the stored document makes one that breaks a rule; names the field."""

    def __init__(self, pointer: str, detail: str, **extra: Any) -> None:
        field = {"location": "body", "pointer": pointer, "detail": detail}
        super().__init__(f"{pointer}: {detail}", errors=[field], **extra)


@dataclass(frozen=True)
class Patch:
    """The fields a PATCH sends (`changes`: set ones only, as the client wrote them) over the stored document."""

    stored: Any
    changes: dict[str, Any]

    @classmethod
    def of(cls, stored: Any, body: BaseModel | dict[str, Any]) -> "Patch":
        changes = body if isinstance(body, dict) else body.model_dump(exclude_unset=True)
        return cls(stored, changes)

    def __getitem__(self, name: str) -> Any:
        """The field as the PATCH would leave it: sent, else stored."""
        return self.changes[name] if name in self.changes else getattr(self.stored, name)

    def sends(self, *names: str) -> bool:
        return all(name in self.changes for name in names)

    def refusal(self, pointer: str, detail: str, *, reads: Iterable[str] = ()) -> AppError:
        return refusal(self, pointer, detail, reads=reads)


def refusal(patch: Patch | None, pointer: str, detail: str, *, reads: Iterable[str] = ()) -> AppError:
    """The error for a broken rule over the document fields it `reads` (none: it reads stored state only): 422 when
    the body alone breaks it (no patch: a whole document; or a PATCH sending every field read), else 409."""
    reads = tuple(reads)
    if patch is None or (reads and patch.sends(*reads)):
        return InvalidInput(pointer, detail)
    return ConflictsWithStored(pointer, detail)
