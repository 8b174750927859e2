"""A benefit's texts in the customer's language: stored as data per language tag ({"en": {"name", "description"},
"zh-CN": {...}}), picked with app/core/i18n.py's fallbacks (zh-CN -> zh -> the default language -> any)."""

from typing import Any

from app.core.i18n import pick


def localized(texts: dict[str, Any], language: str, default: str) -> dict[str, str]:
    """{"name", "description"} of the texts in `language`, else the default language's, else the first stored."""
    names = {tag: tag for tag in texts}
    chosen = texts.get(pick(names, language, default) or "") or next(iter(texts.values()), {})
    return {"name": chosen.get("name", ""), "description": chosen.get("description", "")}
