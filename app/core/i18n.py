"""The customer's language: negotiated from Accept-Language (q-values, RFC 9110), and texts picked from
{language: text} maps stored as data (policy tier labels, recommendation reason texts)."""

import re
from collections.abc import Iterable, Mapping
from typing import Annotated

from fastapi import Depends, Header, Request
from pydantic import StringConstraints

# A language tag as the texts are keyed: language, optional script, optional region (en, zh-CN, zh-Hant-TW).
LANGUAGE_TAG_PATTERN = r"^[a-z]{2,3}(-[A-Z][a-z]{3})?(-(?:[A-Z]{2}|[0-9]{3}))?$"
LanguageTag = Annotated[str, StringConstraints(pattern=LANGUAGE_TAG_PATTERN)]
MAX_ACCEPT_LANGUAGE = 256  # longer headers are read up to here (a browser sends a few dozen characters)
_RANGE = re.compile(  # a language range, and its q-value (0..1, up to three decimals)
    r"^\s*([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q\s*=\s*(0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?))?\s*$"
)


def _truncations(tag: str) -> list[str]:
    """zh-Hant-TW -> [zh-hant-tw, zh-hant, zh]: RFC 4647 lookup's fallbacks, lowercase."""
    parts = tag.lower().split("-")
    return ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]


def negotiate(header: str | None, supported: Iterable[str], default: str) -> str:
    """The supported language the header asks for first (highest q, then the order given): a range matches a
    supported tag equal to it, one it truncates to (en-US -> en) or one of its own language (zh -> zh-CN).
    `*`, no header, an unreadable one or nothing supported: `default`. q=0 ranges are refused languages."""
    if not header:
        return default
    by_lower = {tag.lower(): tag for tag in supported}
    ranges = []
    for i, item in enumerate(header[:MAX_ACCEPT_LANGUAGE].split(",")):
        match = _RANGE.match(item)
        if match is None:
            continue
        quality = float(match[2]) if match[2] is not None else 1.0
        if quality > 0:
            ranges.append((-quality, i, match[1]))
    for _, _, language in sorted(ranges):
        if language == "*":
            return default
        for candidate in _truncations(language):
            if candidate in by_lower:
                return by_lower[candidate]
        primary = language.lower().split("-")[0]
        for lower, tag in by_lower.items():
            if lower.split("-")[0] == primary:
                return tag
    return default


def pick(texts: Mapping[str, str] | None, language: str, default: str) -> str | None:
    """The text of `language` from a {language tag: text} map, falling back along its truncations (zh-CN -> zh),
    then to the default language's; None when the map has neither (the caller's own default applies)."""
    if not texts:
        return None
    by_lower = {tag.lower(): text for tag, text in texts.items()}
    for wanted in (language, default):
        for candidate in _truncations(wanted):
            if candidate in by_lower:
                return by_lower[candidate]
    return None


def request_language(
    request: Request,
    accept_language: Annotated[
        str | None,
        Header(
            description="The customer's languages, e.g. `zh-CN,zh;q=0.9,en;q=0.8`; labels and texts are given in "
            "the first one supported (else the configured default). The response's Content-Language says which."
        ),
    ] = None,
) -> str:
    settings = request.app.state.settings
    return negotiate(accept_language, settings.languages, settings.default_language)


RequestLanguage = Annotated[str, Depends(request_language)]
"""The negotiated language of a routed request (documents Accept-Language in the route)."""


def language_headers(language: str) -> dict[str, str]:
    """Response headers of a document in `language`."""
    return {"Content-Language": language, "Vary": "Accept-Language"}
