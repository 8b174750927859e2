"""The demo customers' older past, drawn after their holdings today (app/demo_records.py): month-end balances
back to HISTORY_MONTHS with products dropped and paused, and a week of raw events adding up to the daily rollups.
"""

import random
from datetime import datetime

from app.demo_base import DemoCalendar, DemoRecords, credit_balance_cents, money_of_cents

EVENT_WINDOW_DAYS = 7  # raw events are kept for the last week of a small share of customers

# Products some customers held once and dropped (or paused for a month and took back): cards, loans and insurance
# without a balance, so that the AUM history stays what the holdings say.
DROPPED_SHARE = 0.10
PAUSED_SHARE = 0.06
DROPPABLE = (
    "credit_card_classic",
    "credit_card_gold",
    "personal_loan",
    "auto_loan",
    "travel_insurance",
    "home_insurance",
)

TXN_CHANNELS = ("mobile", "mobile", "mobile", "card", "card", "web", "branch")


def monthly_history(
    rng: random.Random,
    customer_id: int,
    codes: list[str],
    opened_days_ago: list[int],
    balances: list[int],
    categories: dict[str, str],
    calendar: DemoCalendar,
    onboarded_days_ago: int,
    history: dict[str, list[tuple]],
) -> None:
    """Extend `history` (product -> balance rows, oldest first) to HISTORY_MONTHS month-ends: the older months of
    the products held today, a product held for a while and dropped, a card or loan paused for one month."""
    for code, opened, cents in zip(codes, opened_days_ago, balances, strict=True):
        older = [
            (customer_id, code, day, money_of_cents(int(cents * (0.9 + 0.2 * rng.random()))))
            for day, days_ago in calendar.older_snapshots
            if days_ago <= min(opened, onboarded_days_ago)
        ]
        history[code][:0] = older
    month_ends = calendar.month_ends  # oldest first; index -1 is last month's end
    known = [i for i, day in enumerate(month_ends) if (calendar.today - day).days <= onboarded_days_ago]
    candidates = [c for c in DROPPABLE if c not in codes]
    if rng.random() < DROPPED_SHARE and len(known) >= 2 and candidates:
        code = rng.choice(candidates)
        first = rng.randint(known[0], known[-1] - 1)
        last = rng.randint(first, known[-1] - 1)  # never held at last month's end or today: dropped
        history[code] = [
            (
                customer_id,
                code,
                month_ends[i],
                money_of_cents(credit_balance_cents(rng, code) if categories[code] in ("loan", "card") else 0),
            )
            for i in range(first, last + 1)
        ]
    paused = [c for c in codes if categories[c] in ("card", "loan") and len(history[c]) >= 3]
    if paused and rng.random() < PAUSED_SHARE:
        code = rng.choice(paused)
        rows = history[code]
        del rows[rng.randint(1, len(rows) - 2)]  # a month-end without it, between two with it


def generate_events(
    rng: random.Random,
    customer_id: int,
    activity: dict[int, list[int]],
    last_txn_days_ago: int | None,
    last_txn_at: datetime | None,
    calendar: DemoCalendar,
    out: DemoRecords,
) -> None:
    """Raw events for the last week, adding up to the daily rollups; the latest transaction is at last_txn_at."""
    r = rng.random
    serial = 0
    for days_ago in sorted(activity):
        if days_ago > EVENT_WINDOW_DAYS:
            break
        count, cents, logins, referrals = activity[days_ago]
        if days_ago == last_txn_days_ago:  # the day's latest transaction is the customer's last one
            latest = (last_txn_at - calendar.moment(days_ago, 0)).seconds
        else:
            latest = rng.randint(7 * 3600, 86_399)
        amounts = []
        if count:
            cuts = sorted(rng.randint(0, cents - count) for _ in range(count - 1))
            edges = [0, *cuts, cents - count]
            amounts = [edges[i + 1] - edges[i] + 1 for i in range(count)]  # at least a cent each, summing to cents
        for position, amount in enumerate(amounts):
            second = latest if position == 0 else rng.randint(0, latest)
            serial += 1
            out.customer_event.append(
                (
                    customer_id,
                    f"demo-{serial}",
                    "transaction",
                    calendar.moment(days_ago, second),
                    money_of_cents(amount),
                    "credit" if r() < 0.2 else "debit",
                    TXN_CHANNELS[int(r() * len(TXN_CHANNELS))],
                )
            )
        for kind, times in (("login", logins), ("referral", referrals)):
            for _ in range(times):
                serial += 1
                out.customer_event.append(
                    (
                        customer_id,
                        f"demo-{serial}",
                        kind,
                        calendar.moment(days_ago, rng.randint(0, 86_399)),
                        None,
                        None,
                        "mobile" if kind == "referral" or r() < 0.8 else "web",
                    )
                )
