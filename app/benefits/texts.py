"""A benefit's texts in the customer's language: stored as data per language tag, picked by Accept-Language.
(A small local picker; the lead merges it with core/i18n.)"""

from typing import Any

DEFAULT_LANGUAGE = "en"


def accepted_languages(header: str | None) -> list[str]:
    """The language ranges of an Accept-Language header, most preferred first (q=0 dropped; bad parts ignored)."""
    if not header:
        return []
    ranked = []
    for position, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and quality > 0:
            ranked.append((-quality, position, tag))
    return [tag for _, _, tag in sorted(ranked)]


def pick_language(available: list[str], header: str | None, default: str = DEFAULT_LANGUAGE) -> str | None:
    """The available tag that best matches the header: exact (case-insensitive), then by primary language
    (zh matches zh-CN, zh-TW matches zh-CN when no zh-TW), then the default, then the first available."""
    if not available:
        return None
    lower = {tag.lower(): tag for tag in available}
    for wanted in accepted_languages(header):
        wanted = wanted.lower()
        if wanted == "*":
            break
        if wanted in lower:
            return lower[wanted]
        primary = wanted.split("-")[0]
        for tag in available:
            if tag.lower().split("-")[0] == primary:
                return tag
    return default if default in available else available[0]


def localized(texts: dict[str, Any], language: str | None) -> dict[str, str]:
    """{"name", "description"} of the texts in `language` (or the default, or the first)."""
    chosen = texts.get(language) if language else None
    if chosen is None:
        chosen = texts.get(DEFAULT_LANGUAGE) or next(iter(texts.values()), {"name": "", "description": ""})
    return {"name": chosen.get("name", ""), "description": chosen.get("description", "")}
