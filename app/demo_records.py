"""The demo bank's records: a reproducible synthetic population (customers, holdings, twelve months of month-end
balance history with products added and dropped, daily activity, a sample of raw events) as rows for COPY
(app/demo.py loads them).

Record generation is a pure function of (seed, customer numbers, today): customer number n draws everything from
its own random stream seeded with (seed, n), so the data does not depend on how the run is chunked, and a test can
check it without a database. One customer's draws are read here in their order, top to bottom; the shared pieces
(the default product catalog, the calendar, the row tables) are in app/demo_base.py, the older monthly history and
the raw events, drawn last, in app/demo_history.py.
"""

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from app.customers.service import AUM_CATEGORIES
from app.demo_base import (
    COPY_COLUMNS,
    DEFAULT_PRODUCTS_FILE,
    HISTORY_MONTHS,
    DemoCalendar,
    DemoRecords,
    credit_balance_cents,
    customer_external_id,
    default_products,
    money_of_cents,
)
from app.demo_history import DROPPABLE, generate_events, monthly_history

__all__ = [  # importers' names: app/demo.py and the tests import them from here
    "COPY_COLUMNS",
    "DEFAULT_PRODUCTS_FILE",
    "DROPPABLE",
    "HISTORY_MONTHS",
    "DemoProfile",
    "DemoRecords",
    "customer_external_id",
    "default_products",
    "draw_demo_profile",
    "generate_demo_records",
]

RETAIL, SMALL_BUSINESS = "retail", "small_business"
MAX_PRODUCTS_PER_CUSTOMER = 8
ACTIVITY_WINDOW_DAYS = 89  # activity on days 1..89 before today: all inside the features view's 90-day window
EVENT_CUSTOMER_SHARE = 0.05
HISTORY_SALT = 0x5EED_4157

# Wealth: log-normal, median about 10k, so that about 75% hold < 50k, 20% 50k-500k, 5% 500k-10M and a few
# (about 0.2%) more than 10M.
AUM_LOG_MEDIAN = math.log(9_000)
AUM_LOG_SIGMA = 2.37
RISK_LEVEL_CUMULATIVE = ((0.15, 1), (0.40, 2), (0.75, 3), (0.92, 4), (1.0, 5))

# How a customer's assets are spread over the AUM-bearing products they hold (times a random factor 0.5..1.5);
# insurance without a savings component holds no balance.
BALANCE_WEIGHTS = {
    "current_account": 1.0,
    "business_account": 1.5,
    "savings_account": 2.0,
    "term_deposit_12m": 2.0,
    "fx_account": 0.6,
    "money_market_fund": 1.5,
    "bond_fund": 2.0,
    "balanced_fund": 2.5,
    "equity_fund": 3.0,
    "structured_note": 2.0,
    "private_banking_portfolio": 12.0,
    "pension_plan": 1.2,
    "life_insurance": 0.8,
    "home_insurance": 0.0,
    "travel_insurance": 0.0,
}


@dataclass(slots=True)
class DemoProfile:
    """What a synthetic customer is, before it becomes rows: drawn first from the customer's random stream."""

    segment: str
    age_years: float
    tenure_years: float
    risk_level: int | None
    risk_assessed_days_ago: int | None
    marketing_consent: bool
    aum: float  # currency units today
    monthly_growth: float  # the AUM trend over the last months: > 0 growing, < 0 declining


def _seeded(rng: random.Random, seed: int, number: int) -> random.Random:
    rng.seed((seed << 40) ^ number)
    return rng


def draw_demo_profile(seed: int, number: int) -> DemoProfile:
    """Customer `number`'s profile alone (what generate_demo_records starts from): cheap, for distribution checks."""
    return _draw_profile(_seeded(random.Random(), seed, number))


def _draw_profile(rng: random.Random) -> DemoProfile:
    r = rng.random
    segment = SMALL_BUSINESS if r() < 0.08 else RETAIL
    age = 18.0 + min(71.9, rng.gammavariate(3.0, 9.0))  # mean about 45, long tail to 90
    if segment == SMALL_BUSINESS:
        age = max(age, 21.0)
    tenure = min(25.0, rng.expovariate(1 / 7.0), age - 16.0)
    risk_level = None
    if r() >= 0.10:
        u = r()
        risk_level = next(level for bound, level in RISK_LEVEL_CUMULATIVE if u < bound)
    mu = AUM_LOG_MEDIAN + 0.012 * (age - 45.0) + 0.02 * (tenure - 7.0) + (0.6 if segment == SMALL_BUSINESS else 0.0)
    aum = rng.lognormvariate(mu, AUM_LOG_SIGMA)
    if risk_level is not None and risk_level < 5 and aum > 500_000 and r() < 0.3:
        risk_level += 1
    assessed = None
    if risk_level is not None:
        u = r()
        assessed = rng.randint(1, 365) if u < 0.8 else rng.randint(366, 730) if u < 0.95 else rng.randint(731, 1500)
    u = r()
    growth = 0.01 + 0.05 * r() if u < 0.25 else -(0.01 + 0.07 * r()) if u < 0.45 else 0.01 * (r() - 0.5)
    return DemoProfile(segment, age, tenure, risk_level, assessed, r() < 0.70, aum, growth)


def _choose_products(rng: random.Random, profile: DemoProfile) -> list[str]:
    """The customer's products, most important first (the cap keeps the first eight): consistent with wealth and
    age; investments only up to the customer's risk level; business products only for small businesses."""
    r = rng.random
    aum, age, risk = profile.aum, profile.age_years, profile.risk_level or 0
    codes = ["current_account"]
    if profile.segment == SMALL_BUSINESS:
        codes.append("business_account")
    if aum >= 1_500_000 and risk >= 4 and r() < (0.9 if aum >= 10_000_000 else 0.6):
        codes.append("private_banking_portfolio")
    if r() < (0.75 if aum >= 20_000 else 0.3 if aum >= 1_000 else 0.08):
        codes.append("savings_account")
    if aum >= 5_000 and r() < (0.35 if aum >= 50_000 else 0.12):
        codes.append("term_deposit_12m")
    if aum >= 20_000 and risk >= 1 and r() < (0.3 if aum >= 100_000 else 0.12):
        codes.append("money_market_fund")
    if aum >= 25_000 and risk >= 2 and r() < (0.35 if aum >= 100_000 else 0.15):
        codes.append("bond_fund")
    if aum >= 25_000 and risk >= 3 and r() < (0.45 if aum >= 200_000 else 0.2):
        codes.append("balanced_fund")
    if aum >= 50_000 and risk >= 4 and r() < (0.55 if aum >= 500_000 else 0.3):
        codes.append("equity_fund")
    if aum >= 250_000 and risk >= 5 and r() < 0.4:
        codes.append("structured_note")
    if age < 65 and risk >= 3 and r() < (0.35 if aum >= 50_000 else 0.1):
        codes.append("pension_plan")
    if age <= 70 and r() < (0.3 if aum >= 100_000 else 0.08):
        codes.append("life_insurance")
    if r() < (0.25 if aum >= 100_000 else 0.04):
        codes.append("fx_account")
    if r() < 0.45:
        codes.append(
            "credit_card_platinum"
            if aum >= 100_000 and r() < 0.7
            else "credit_card_gold"
            if aum >= 25_000
            else "credit_card_classic"
        )
    has_mortgage = 25 <= age <= 65 and r() < 0.18
    if has_mortgage:
        codes.append("mortgage")
    if profile.segment == SMALL_BUSINESS and r() < 0.4:
        codes.append("sme_credit_line")
    if age < 75 and r() < 0.1:
        codes.append("personal_loan")
    if age < 75 and r() < 0.07:
        codes.append("auto_loan")
    if r() < (0.55 if has_mortgage else 0.1):
        codes.append("home_insurance")
    if age < 80 and r() < 0.06:
        codes.append("travel_insurance")
    return codes[:MAX_PRODUCTS_PER_CUSTOMER]


def _generate_customer(
    rng: random.Random,
    number: int,
    customer_id: int,
    categories: dict[str, str],
    calendar: DemoCalendar,
    out: DemoRecords,
    history_rng: random.Random | None = None,
) -> None:
    """Append customer `number`'s rows to `out`, drawing everything from `rng` (seeded for this customer) and the
    older monthly holdings from `history_rng` (a second stream of the customer's)."""
    r = rng.random
    profile = _draw_profile(rng)
    small_business = profile.segment == SMALL_BUSINESS
    birth_days_ago = int((profile.age_years + 0.003 + 0.99 * r()) * 365.2425)
    onboarded_days_ago = max(1, int(profile.tenure_years * 365.2425))
    onboarded_at = calendar.moment(onboarded_days_ago, rng.randrange(8 * 3600, 18 * 3600))
    risk_assessed_at = None
    if profile.risk_assessed_days_ago is not None:
        risk_assessed_at = calendar.moment(
            min(profile.risk_assessed_days_ago, onboarded_days_ago), rng.randrange(8 * 3600, 18 * 3600)
        )

    # Holdings today: AUM spread over the asset products, credit balances on their own.
    codes = _choose_products(rng, profile)
    aum_cents = int(profile.aum * 100)
    weights = [BALANCE_WEIGHTS[code] * (0.5 + r()) if categories[code] in AUM_CATEGORIES else 0.0 for code in codes]
    total_weight = sum(weights)
    balances = [int(aum_cents * weight / total_weight) for weight in weights]
    balances[0] += aum_cents - sum(balances)  # the current account takes the rounding
    opened_days_ago = []
    for index, code in enumerate(codes):
        if categories[code] not in AUM_CATEGORIES:
            balances[index] = credit_balance_cents(rng, code)
        primary = code in ("current_account", "business_account")
        opened_days_ago.append(onboarded_days_ago if primary else int(onboarded_days_ago * r() ** 0.6))

    # Month-end history with the customer's trend (assets) or amortisation (loans); today's AUM is exact.
    today = calendar.today
    history: dict[str, list[tuple]] = {code: [] for code in codes}
    for day, days_ago, months_back in calendar.snapshots:
        if days_ago > onboarded_days_ago:
            continue
        asset_factor = (1.0 + profile.monthly_growth) ** -months_back
        aum_then = 0
        for code, opened, cents in zip(codes, opened_days_ago, balances, strict=True):
            if opened < days_ago:
                continue
            category = categories[code]
            if category in AUM_CATEGORIES:
                past = int(cents * asset_factor * (1.0 + 0.02 * rng.gauss(0.0, 1.0)))
                aum_then += past
            elif category == "loan":
                past = int(cents * 1.006**months_back)
            else:
                past = int(cents * (0.4 + 1.2 * r()))
            history[code].append((customer_id, code, day, money_of_cents(past)))
        out.customer_aum_daily.append((customer_id, day, money_of_cents(aum_then)))
    out.customer_aum_daily.append((customer_id, today, money_of_cents(aum_cents)))

    if history_rng is not None:
        monthly_history(
            history_rng,
            customer_id,
            codes,
            opened_days_ago,
            balances,
            categories,
            calendar,
            onboarded_days_ago,
            history,
        )

    # Rows in primary-key order (ids ascend across customers), so index inserts append at the right edge.
    for code, opened, cents in sorted(zip(codes, opened_days_ago, balances, strict=True)):
        balance = money_of_cents(cents)
        out.holding.append((customer_id, code, calendar.day(opened), balance, today))
        out.holding_balance.extend(history.pop(code))
        out.holding_balance.append((customer_id, code, today, balance))
    for code in sorted(history):  # products held once and dropped
        out.holding_balance.extend(history[code])

    # Activity: days with transactions and logins over the last 89 days, by engagement; referrals over a year.
    u = r()
    if u < 0.12:  # dormant: no transaction for 90 days or more, perhaps a look at the app
        txn_days, login_days, per_day = 0, (rng.randint(1, 4) if r() < 0.3 else 0), 1
    elif u < 0.40:  # occasional
        txn_days, login_days, per_day = rng.randint(1, 6), rng.randint(0, 3), 2
    elif u < 0.85:  # regular
        txn_days, login_days, per_day = rng.randint(6, 30), rng.randint(0, 6), 4
    else:  # daily life runs through the account
        txn_days, login_days, per_day = rng.randint(30, 75), rng.randint(0, 3), 6
    if small_business:
        per_day *= 2
    mobile_user = r() < 0.8
    ticket = rng.lognormvariate(math.log(350.0 if small_business else 45.0), 0.6)
    window = min(ACTIVITY_WINDOW_DAYS, onboarded_days_ago)
    txn_days = min(txn_days, window)
    login_days = min(login_days, window - txn_days)
    days = rng.sample(range(1, window + 1), txn_days + login_days)
    activity: dict[int, list[int]] = {}  # days ago -> [txn_count, txn_amount_cents, logins, referrals]
    for position, days_ago in enumerate(days):
        if position < txn_days:
            count = 1 + int(r() * per_day)
            cents = max(100 * count, int(count * ticket * (0.3 + 1.4 * r()) * 100))
            activity[days_ago] = [count, cents, (1 + int(r() * 3)) if mobile_user else 0, 0]
        else:
            activity[days_ago] = [0, 0, 1 + int(r() * 2), 0]

    last_txn_at = None
    last_txn_days_ago = min(days[:txn_days], default=None)
    if last_txn_days_ago is None and onboarded_days_ago > 90 and r() < 0.85:
        last_txn_days_ago = rng.randint(90, min(900, onboarded_days_ago))
        if last_txn_days_ago < 365:
            activity[last_txn_days_ago] = [1, max(100, int(ticket * 100)), 0, 0]
    if last_txn_days_ago is not None:
        last_txn_at = calendar.moment(last_txn_days_ago, rng.randrange(7 * 3600, 23 * 3600))

    if r() < 0.06:
        for _ in range(1 + (r() < 0.3) + (r() < 0.1)):
            days_ago = rng.randint(1, min(364, onboarded_days_ago))
            activity.setdefault(days_ago, [0, 0, 0, 0])[3] += 1

    for days_ago in sorted(activity, reverse=True):
        count, cents, logins, referrals = activity[days_ago]
        out.customer_activity_daily.append(
            (customer_id, calendar.day(days_ago), count, money_of_cents(cents), logins, referrals)
        )

    if r() < EVENT_CUSTOMER_SHARE:
        generate_events(rng, customer_id, activity, last_txn_days_ago, last_txn_at, calendar, out)

    out.customer.append(
        (
            customer_id,
            customer_external_id(number),
            profile.segment,
            f"Demo Customer {number}",
            date.fromordinal(today.toordinal() - birth_days_ago),
            onboarded_at,
            profile.risk_level,
            risk_assessed_at,
            profile.marketing_consent,
            last_txn_at,
        )
    )


def generate_demo_records(
    seed: int,
    first_number: int,
    count: int,
    today: date,
    customer_ids: Sequence[int] | None = None,
    categories: dict[str, str] | None = None,
) -> DemoRecords:
    """Rows for customers first_number .. first_number + count - 1: a pure function of its arguments.

    `customer_ids` are the database ids to write (default: the customer numbers); `categories` maps product code
    to category (default: the shipped catalog).
    """
    ids = range(first_number, first_number + count) if customer_ids is None else customer_ids
    if len(ids) != count:
        raise ValueError(f"{len(ids)} customer ids for {count} customers")
    categories = categories or {row["code"]: row["category"] for row in default_products()}
    calendar, out, rng, history_rng = DemoCalendar(today), DemoRecords(), random.Random(), random.Random()
    for offset in range(count):
        number = first_number + offset
        _generate_customer(
            _seeded(rng, seed, number),
            number,
            ids[offset],
            categories,
            calendar,
            out,
            _seeded(history_rng, seed ^ HISTORY_SALT, number),
        )
    return out
