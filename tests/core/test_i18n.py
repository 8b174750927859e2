"""The customer's language (app/core/i18n.py): Accept-Language negotiated with q-values, texts picked from
{language: text} maps with the fallbacks zh-CN -> zh -> the default language."""

import pytest

from app.core.config import Settings
from app.core.i18n import negotiate, pick

SUPPORTED = ["en", "zh-CN"]


@pytest.mark.parametrize(
    "header, expected",
    [
        (None, "en"),
        ("", "en"),
        ("zh-CN", "zh-CN"),
        ("zh-cn", "zh-CN"),  # tags are case-insensitive
        ("zh", "zh-CN"),  # a language range matches a supported tag of its language
        ("zh-Hans-CN", "zh-CN"),  # truncated to zh, then by language
        ("en-US,en;q=0.9", "en"),  # truncated: en-US -> en
        ("fr-FR,fr;q=0.9,zh;q=0.8,en;q=0.7", "zh-CN"),  # the first supported, by q
        ("en;q=0.5, zh-CN;q=0.8", "zh-CN"),  # q decides, not the order
        ("zh-CN;q=0.5, en;q=0.5", "zh-CN"),  # equal q: the order given
        ("zh-CN;q=0, en;q=0.1", "en"),  # q=0: refused
        ("zh-CN;q=0", "en"),
        ("*", "en"),
        ("de, *;q=0.1", "en"),
        ("de", "en"),  # nothing supported: the default
        ("zh-CN;q=abc, en;q=0.2", "en"),  # an unreadable range is skipped, not an error
        (";;;,,,", "en"),
        ("zh-CN;q=1.5", "en"),  # q above 1 is not a q-value
        ("x" * 1000, "en"),
    ],
)
def test_language_is_negotiated_from_accept_language(header, expected):
    assert negotiate(header, SUPPORTED, "en") == expected


def test_the_default_is_configurable_and_always_supported():
    assert negotiate("de", SUPPORTED, "zh-CN") == "zh-CN"
    settings = Settings(default_language="zh-CN", languages="en")
    assert settings.languages == ["en", "zh-CN"] and settings.default_language == "zh-CN"
    assert Settings(languages="en, zh-CN, ja").languages == ["en", "zh-CN", "ja"]
    with pytest.raises(ValueError, match="default_language"):
        Settings(default_language="english")


@pytest.mark.parametrize(
    "texts, language, expected",
    [
        ({"en": "Wealth", "zh-CN": "财富"}, "zh-CN", "财富"),
        ({"en": "Wealth", "zh": "财富"}, "zh-CN", "财富"),  # zh-CN -> zh
        ({"en": "Wealth", "zh-TW": "財富"}, "zh-CN", "Wealth"),  # another region is not a fallback: the default
        ({"en": "Wealth"}, "zh-CN", "Wealth"),  # -> the default language
        ({"en-GB": "Wealth"}, "en", None),  # a more specific tag does not stand for its language
        ({"zh-CN": "财富"}, "en", None),  # none in the language or the default: the caller's own default
        ({}, "en", None),
        (None, "en", None),
    ],
)
def test_a_text_is_picked_with_fallbacks(texts, language, expected):
    assert pick(texts, language, "en") == expected
