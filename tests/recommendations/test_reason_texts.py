"""Recommendation reasons in the customer's language: their words are data (app/defaults/reason_texts.json) in
English and Chinese, chosen by Accept-Language on the hot and the routed path alike; codes and values do not
change with the language."""

import string
import typing

from app.recommendations.reason_texts import reason_text, reason_texts
from app.recommendations.schemas import Reason
from tests.recommendations.test_hot_recommendations import _without_ids
from tests.recommendations.test_recommendations import make_customer

PATH = "/v1/customers/RT1/recommendations?explore=false&limit=10"


def _codes_of_the_schema() -> set[str]:
    union = typing.get_args(Reason)[0]
    return {typing.get_args(model.model_fields["code"].annotation)[0] for model in typing.get_args(union)}


def _fields(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field}


def test_every_reason_has_english_and_chinese_words_with_the_same_facts():
    texts = reason_texts()
    assert _codes_of_the_schema() <= set(texts)
    for code, by_language in texts.items():
        assert {"en", "zh-CN"} <= set(by_language), code
        assert _fields(by_language["en"]) == _fields(by_language["zh-CN"]), code
    assert reason_text("WIN_BACK", "zh-CN", "en", date="2026-01-31") == "您曾持有至2026-01-31"
    assert reason_text("WIN_BACK", "fr", "en", date="2026-01-31") == "held until 2026-01-31"  # the default
    assert reason_text("WIN_BACK", "fr", "zh-CN", date="2026-01-31") == "您曾持有至2026-01-31"
    assert reason_text("CO_HOLDING", "zh-CN", "en", share=0.425) == "持有与您相同产品的客户中有42%持有"


async def test_reasons_in_english_and_chinese_on_both_paths(client, routed, as_role, bank):
    await make_customer(
        client, as_role, "RT1", risk=4, holdings=[("current_account", "5000.00"), ("savings_account", "250000.00")]
    )
    documents = {}
    for accept, language in ((None, "en"), ("en-US,en;q=0.9", "en"), ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN")):
        headers = {**as_role("app"), **({"Accept-Language": accept} if accept else {})}
        hot, plain = await client.get(PATH, headers=headers), await routed.get(PATH, headers=headers)
        assert hot.status_code == plain.status_code == 200, hot.text
        assert hot.headers["content-language"] == plain.headers["content-language"] == language
        assert _without_ids(hot.json()) == _without_ids(plain.json())
        documents[accept] = _without_ids(hot.json())
    english, chinese = documents["en-US,en;q=0.9"], documents["zh-CN,zh;q=0.9,en;q=0.8"]
    assert documents[None] == english  # English is the configured default

    def reasons(document):
        return {item["product"]["product_code"]: item["reasons"] for item in document["items"]}

    en, zh = reasons(english), reasons(chinese)
    assert en.keys() == zh.keys() and "bond_fund" in en and "platinum_card" in en
    for code in en:  # the same reasons, codes and facts; only the words differ
        assert [(r["code"], r["value"]) for r in en[code]] == [(r["code"], r["value"]) for r in zh[code]]
    suitable = [next(r["text"] for r in side["bond_fund"] if r["code"] == "SUITABLE") for side in (en, zh)]
    assert suitable == ["risk R2 <= tolerance 4", "产品风险等级R2，不超过您的风险承受能力4"]
    eligible = [next(r["text"] for r in side["platinum_card"] if r["code"] == "ELIGIBLE") for side in (en, zh)]
    assert eligible == ["aum_avg_3m 255,000 >= 100,000"] * 2, eligible  # facts and operators: the same words


async def test_the_configured_default_language_words_the_reasons(test_settings, sessionmaker, keys, bank, as_role):
    import httpx

    from app.main import create_app

    chinese = create_app(test_settings.model_copy(update={"default_language": "zh-CN"}), sessionmaker=sessionmaker)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=chinese), base_url="http://t") as other:
        await make_customer(other, as_role, "RT1", risk=4, holdings=[("current_account", "5000.00")])
        response = await other.get(PATH, headers=as_role("app"))
        assert response.headers["content-language"] == "zh-CN"
        texts = [r["text"] for item in response.json()["items"] for r in item["reasons"] if r["code"] == "SUITABLE"]
        assert texts and all(t.startswith("产品风险等级") for t in texts)
