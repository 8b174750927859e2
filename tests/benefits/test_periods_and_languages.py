"""Usage periods (calendar, UTC) and the choice of a text's language from Accept-Language."""

from datetime import date

from app.benefits.customer import period_bounds
from app.benefits.texts import localized


def test_periods_are_calendar_months_quarters_and_years():
    assert period_bounds("month", date(2026, 12, 6)) == (date(2026, 12, 1), date(2027, 1, 1))
    assert period_bounds("quarter", date(2026, 12, 6)) == (date(2026, 10, 1), date(2027, 1, 1))
    assert period_bounds("quarter", date(2026, 5, 31)) == (date(2026, 4, 1), date(2026, 7, 1))
    assert period_bounds("year", date(2026, 2, 28)) == (date(2026, 1, 1), date(2027, 1, 1))


def test_a_benefit_text_is_given_in_the_language_asked_then_the_default_then_any():
    texts = {
        "en": {"name": "Lounge", "description": "Airport lounge"},
        "zh-CN": {"name": "贵宾厅", "description": "机场贵宾厅"},
    }
    assert localized(texts, "zh-CN", "en") == {"name": "贵宾厅", "description": "机场贵宾厅"}
    assert localized(texts, "zh-Hans-CN", "en")["name"] == "Lounge"  # not a stored tag or its truncation: the default
    assert localized(texts, "fr", "zh-CN")["name"] == "贵宾厅"  # the configured default, not English
    assert localized({"zh-CN": texts["zh-CN"]}, "en", "en")["name"] == "贵宾厅"  # nothing matches: what is stored
    assert localized({}, "en", "en") == {"name": "", "description": ""}
