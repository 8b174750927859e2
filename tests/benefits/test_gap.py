"""The gap (app/rules/gap.py): the compiler's explained leaves and recorded values read as distances: all needs
every member, any its cheapest, a not that fails asks its holding comparisons to stop; time-bound attributes."""

from app.rules import AttributeCatalog, compile_explanation, parse_condition
from app.rules.gap import condition_gap


def gap_of(document: dict, facts: list[tuple]):
    condition = parse_condition(document, "/c")
    leaves = compile_explanation(condition, AttributeCatalog(), pointer="/c")
    return condition_gap(condition, leaves, facts, pointer="/c")


def test_all_needs_every_unmet_member_with_its_distance():
    gap = gap_of(
        {
            "all": [
                {"attr": "aum_avg_3m", "op": "gte", "value": 500000},
                {"attr": "products_held_count", "op": "gt", "value": 3},
                {"attr": "days_since_last_txn", "op": "lte", "value": 30},
                {"attr": "open_complaints", "op": "eq", "value": 0},
            ]
        },
        [("123456.78", False), (2, False), (45, False), (0, True)],
    )
    assert gap.met is False and gap.closable == "by_customer"
    assert [c["distance"] for c in gap.conditions] == ["376543.22", 2, 15, None]
    assert gap.cheapest == ["/c/all/0", "/c/all/1", "/c/all/2"]
    assert [c["on_cheapest_path"] for c in gap.conditions] == [True, True, True, False]


def test_any_takes_the_branch_the_customer_can_close_with_the_fewest_conditions():
    gap = gap_of(
        {
            "any": [
                {"attr": "age", "op": "lt", "value": 30},
                {"all": [{"attr": "aum", "op": "gte", "value": 100}, {"attr": "logins_30d", "op": "gte", "value": 4}]},
                {"attr": "referrals_12m", "op": "gte", "value": 1},
            ]
        },
        [(45, False), ("10.00", False), (1, False), (0, False)],
    )
    assert gap.cheapest == ["/c/any/2"] and gap.closable == "by_customer"
    by_pointer = {c["pointer"]: c for c in gap.conditions}
    assert by_pointer["/c/any/0"]["closable"] == "no" and by_pointer["/c/any/0"]["distance"] == 16
    assert by_pointer["/c/any/1/all/0"]["distance"] == "90.00" and not by_pointer["/c/any/1/all/0"]["on_cheapest_path"]


def test_a_condition_only_time_closes_and_one_nobody_closes():
    tenure = gap_of({"attr": "tenure_months", "op": "gte", "value": 36}, [(30, False)])
    assert tenure.closable == "with_time" and tenure.conditions[0]["distance"] == 6
    young = gap_of({"attr": "age", "op": "lte", "value": 35}, [(40, False)])
    assert young.closable == "no" and young.conditions[0]["distance"] == 5
    unknown = gap_of({"attr": "nps_latest", "op": "gte", "value": 9}, [(None, None)])
    assert unknown.met is False and unknown.conditions[0]["met"] is None and unknown.conditions[0]["distance"] is None


def test_a_met_condition_has_no_gap_and_a_failing_not_names_what_holds():
    met = gap_of({"any": [{"attr": "aum", "op": "gte", "value": 1}, {"always": True}]}, [("0.00", False)])
    assert met.met is True and met.cheapest == [] and met.conditions[0]["distance"] == "1.00"
    negated = gap_of(
        {"not": {"attr": "held_categories", "op": "contains", "value": "loan"}}, [(["deposit", "loan"], True)]
    )
    assert negated.met is False and negated.cheapest == ["/c/not"] and negated.conditions[0]["distance"] is None
