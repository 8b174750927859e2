"""Response documents serialized by their pydantic schema without building model instances, for the hot reads.

`document_serializer(Model)` is built once from the model's own core schema (or any type's, e.g. list[Model]), each
(nested) model read as a dict of its fields: the same field serializers (UUIDs, datetimes, dates, floats, aliases)
the routed path's response model has, fed plain dicts. A hot read therefore writes the schema's JSON by
construction, at the cost of dicts rather than validated models.
"""

from typing import Any

from pydantic import TypeAdapter
from pydantic_core import SchemaSerializer

_FIELD_KEYS = ("schema", "serialization_alias", "serialization_exclude", "serialization_exclude_if", "metadata")


def document_serializer(type_: Any) -> SchemaSerializer:
    """A serializer of `type_`'s JSON (a model, or a type made of models) for dicts shaped like its models (keys in
    field order; a key left out is left out, as `exclude_unset` would)."""
    return SchemaSerializer(_as_dicts(TypeAdapter(type_).core_schema))


def _as_dicts(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_as_dicts(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("type") != "model":
        return {key: _as_dicts(value) for key, value in schema.items()}
    fields = schema["schema"]
    if fields.get("type") != "model-fields" or fields.get("computed_fields") or schema.get("serialization"):
        raise TypeError(f"{schema['cls'].__name__}: only plain fields can be serialized from a dict")
    typed = {
        "type": "typed-dict",
        "total": False,
        "fields": {
            name: {"type": "typed-dict-field", **{key: _as_dicts(field[key]) for key in _FIELD_KEYS if key in field}}
            for name, field in fields["fields"].items()
        },
    }
    if "ref" in schema:
        typed["ref"] = schema["ref"]
    return typed
