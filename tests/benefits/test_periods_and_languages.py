"""Usage periods (calendar, UTC) and the choice of a text's language from Accept-Language."""

from datetime import date

from app.benefits.customer import period_bounds
from app.benefits.texts import accepted_languages, pick_language


def test_periods_are_calendar_months_quarters_and_years():
    assert period_bounds("month", date(2026, 12, 6)) == (date(2026, 12, 1), date(2027, 1, 1))
    assert period_bounds("quarter", date(2026, 12, 6)) == (date(2026, 10, 1), date(2027, 1, 1))
    assert period_bounds("quarter", date(2026, 5, 31)) == (date(2026, 4, 1), date(2026, 7, 1))
    assert period_bounds("year", date(2026, 2, 28)) == (date(2026, 1, 1), date(2027, 1, 1))


def test_the_best_accepted_language_is_picked():
    assert accepted_languages("en;q=0.5, zh-CN, fr;q=0") == ["zh-CN", "en"]
    available = ["en", "zh-CN"]
    assert pick_language(available, "zh-TW,zh;q=0.9") == "zh-CN"  # same primary language
    assert pick_language(available, "ZH-cn") == "zh-CN"
    assert pick_language(available, "de, *;q=0.1") == "en"
    assert pick_language(["zh-CN"], "de") == "zh-CN"  # nothing matches, no default: the first
    assert pick_language(available, "en;q=bad, zh-CN;q=0.4") == "zh-CN"
    assert pick_language([], "en") is None
