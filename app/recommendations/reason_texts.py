"""The reasons' words in the customer's language: templates per reason code and language, shipped as data in
app/defaults/reason_texts.json (not in code), filled with the facts behind each reason."""

import json
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from app.core.i18n import LanguageTag, pick

REASON_TEXTS_FILE = Path(__file__).resolve().parents[1] / "defaults" / "reason_texts.json"
FALLBACK_LANGUAGE = "en"  # every code has an English text: the last resort when neither language has one


@cache
def reason_texts() -> dict[str, dict[str, str]]:
    """{reason code: {language tag: template}}, validated once per process."""
    texts = TypeAdapter(dict[str, dict[LanguageTag, str]]).validate_python(json.loads(REASON_TEXTS_FILE.read_text()))
    missing = sorted(code for code, by_language in texts.items() if FALLBACK_LANGUAGE not in by_language)
    if missing:
        raise ValueError(f"{REASON_TEXTS_FILE.name}: no {FALLBACK_LANGUAGE} text for {', '.join(missing)}")
    return texts


def reason_text(code: str, language: str, default: str, **facts: Any) -> str:
    """The words of reason `code` in `language` (falling back zh-CN -> zh -> `default` -> en), its facts filled in
    (`str.format` fields: {share:.0%}, {date})."""
    return _template(code, language, default).format(**facts)


@cache
def _template(code: str, language: str, default: str) -> str:
    """The template of `code` in `language` (picked once per code and pair of languages: a request words several
    reasons, and picking one walks the language's fallbacks)."""
    by_language = reason_texts()[code]
    return pick(by_language, language, default) or by_language[FALLBACK_LANGUAGE]
