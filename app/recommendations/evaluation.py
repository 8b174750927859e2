"""Offline evaluation of the recommender on monthly holdings snapshots (the layout of the public Santander
product-recommendation data: ncodpers, fecha_dato, ind_*_ult1 columns and demographics).

The snapshots are loaded into a database of their own, the earlier months as history (holding balances and
feedback statistics: a product added after a month counts as an accept of an offer, not adding it as an impression
without one), the second-to-last month as current holdings. The service's own ranking (`Recommender.recommend`, as
the API serves it) then recommends 7 products per customer, scored against the products added in the last month
with MAP@7, beside two baselines measured on the same data: popularity and plain co-holding. The learned ranker
(app/recommendations/learned) is trained in the same run on the month pairs before the evaluated one, read from
the loaded history like the service reads it, and ranks the same customers.
"""

import asyncio
import csv
import gzip
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from time import perf_counter

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.db import driver_connection
from app.recommendations import ranking_stats
from app.recommendations.learned.features import feature_spec, fetch_rows
from app.recommendations.learned.training import TrainingOptions, train_from_database
from app.recommendations.recommender import Recommender
from app.tiering import runs
from app.tiering.policies import activate_version, create_policy
from app.tiering.schemas import TierPolicyCreate

K = 7
SEGMENT_POLICY = "bank_segment"
SEGMENT_TIERS = [("top", "01 - TOP", 30), ("private", "02 - PARTICULARES", 20), ("student", "03 - UNIVERSITARIO", 10)]


# Profile columns loaded as the bank's custom attributes (name, type, column): the learned ranker reads them.
PROFILE_ATTRIBUTES = [
    ("income", "number", "renta"),
    ("entry_channel", "string", "canal_entrada"),
    ("sex", "string", "sexo"),
    ("province", "string", "nomprov"),
    ("active_customer", "number", "ind_actividad_cliente"),
    ("relation", "string", "indrel"),
    ("relation_type", "string", "tiprel_1mes"),
]


@dataclass
class Snapshots:
    months: list[str]
    products: list[str]
    holdings: dict[str, dict[str, set[str]]]  # customer -> month -> products held
    segment: dict[str, str]
    onboarded: dict[str, date]
    profile: dict[str, dict[str, str]] = field(default_factory=dict)  # customer -> column -> value (last month)


def read_snapshots(path: Path) -> Snapshots:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [c for c in reader.fieldnames or [] if c.startswith("ind_") and c.endswith("_ult1")]
        holdings: dict[str, dict[str, set[str]]] = defaultdict(dict)
        segment, onboarded, profile, months = {}, {}, {}, set()
        for row in reader:
            customer, month = row["ncodpers"].strip(), row["fecha_dato"].strip()
            months.add(month)
            holdings[customer][month] = {_code(c) for c in columns if row[c].strip() in ("1", "1.0")}
            segment[customer] = (row.get("segmento") or "").strip()
            try:
                onboarded[customer] = date.fromisoformat((row.get("fecha_alta") or "").strip())
            except ValueError:
                onboarded[customer] = date(2000, 1, 1)
            profile[customer] = {c: (row.get(c) or "").strip() for c in ("age", *(a[2] for a in PROFILE_ATTRIBUTES))}
    return Snapshots(sorted(months), [_code(c) for c in columns], dict(holdings), segment, onboarded, profile)


def _birth_date(age: str | None, as_of: date) -> date | None:
    """A birth date that gives the customer's age (as of the last month) at mid-year."""
    try:
        years = int(float(age or ""))
    except ValueError:
        return None
    return date(as_of.year - years, as_of.month, 1) - timedelta(days=182) if 0 < years < 120 else None


def _attributes(data: Snapshots, customer: str) -> str:
    values: dict[str, object] = {"bank_segment": data.segment[customer]}
    profile = data.profile.get(customer, {})
    for name, kind, column in PROFILE_ATTRIBUTES:
        value = profile.get(column, "")
        if kind == "number":
            try:
                values[name] = float(value)
            except ValueError:
                continue
        elif value:
            values[name] = value
    return json.dumps(values)


def _code(column: str) -> str:
    return column.removeprefix("ind_").removesuffix("_ult1")


def average_precision(actual: set[str], predicted: list[str], k: int = K) -> float:
    if not actual:
        return 0.0
    hits, total = 0, 0.0
    for i, product in enumerate(predicted[:k]):
        if product in actual and product not in predicted[:i]:
            hits += 1
            total += hits / (i + 1)
    return total / min(len(actual), k)


async def load_snapshots(session: AsyncSession, data: Snapshots, current: str) -> None:
    """Products, customers (with their segment as a custom attribute), holdings history and feedback history."""
    await session.execute(
        text(
            "INSERT INTO product (code, name, category, risk_level, channels) "
            "SELECT code, code, 'deposit', 1, ARRAY['web', 'mobile'] FROM unnest(CAST(:codes AS text[])) AS code"
        ),
        {"codes": data.products},
    )
    await session.execute(
        text(
            "INSERT INTO custom_attribute_definition (name, type, description) "
            "SELECT * FROM unnest(CAST(:names AS text[]), CAST(:types AS text[]), CAST(:columns AS text[]))"
        ),
        {
            "names": ["bank_segment"] + [a[0] for a in PROFILE_ATTRIBUTES],
            "types": ["string"] + [a[1] for a in PROFILE_ATTRIBUTES],
            "columns": ["segmento"] + [a[2] for a in PROFILE_ATTRIBUTES],
        },
    )
    raw = await (await session.connection()).get_raw_connection()
    conn = raw.driver_connection
    customers = [c for c in data.holdings if current in data.holdings[c]]
    last = date.fromisoformat(data.months[-1])
    await conn.copy_records_to_table(
        "customer",
        columns=["external_id", "segment", "birth_date", "onboarded_at", "marketing_consent", "attributes"],
        records=[
            (
                c,
                "retail",
                _birth_date(data.profile.get(c, {}).get("age"), last),
                datetime.combine(data.onboarded[c], time(), UTC),
                True,
                _attributes(data, c),
            )
            for c in customers
        ],
    )
    ids = dict(
        await conn.fetch(  # each copied customer's external id held unique, as every writer of customers does
            "INSERT INTO customer_external_id (external_id, customer_id) SELECT external_id, id FROM customer "
            "WHERE external_id = ANY($1::text[]) RETURNING external_id, customer_id",
            customers,
        )
    )
    month_dates = {m: date.fromisoformat(m) for m in data.months}
    await conn.copy_records_to_table(
        "holding",
        columns=["customer_id", "product_code", "balance", "as_of"],
        records=[(ids[c], p, 1, month_dates[current]) for c in customers for p in data.holdings[c][current]],
    )
    # The balance history up to the current month, as PUT .../holdings records it.
    history = [m for m in data.months if m < current]
    await conn.copy_records_to_table(
        "holding_balance",
        columns=["customer_id", "product_code", "as_of", "balance"],
        records=[
            (ids[c], p, month_dates[m], 1)
            for c in customers
            for m in [*history, current]
            for p in data.holdings[c].get(m, ())
        ],
    )
    # Each month's AUM snapshot (every product's balance is 1): a month with no product held is a report too.
    await conn.copy_records_to_table(
        "customer_aum_daily",
        columns=["customer_id", "day", "aum"],
        records=[
            (ids[c], month_dates[m], len(data.holdings[c][m]))
            for c in customers
            for m in [*history, current]
            if m in data.holdings[c]
        ],
    )
    policy = TierPolicyCreate(
        policy_key=SEGMENT_POLICY,
        name="Bank segment",
        tiers=[
            {
                "code": code,
                "label": label,
                "rank": rank,
                "condition": {"attr": "bank_segment", "op": "eq", "value": label},
            }
            for code, label, rank in SEGMENT_TIERS
        ]
        + [{"code": "other", "label": "Other", "rank": 0, "condition": {"always": True}}],
        downgrade_grace_days=0,
    )
    await create_policy(session, policy, "evaluation")
    await activate_version(session, SEGMENT_POLICY, 1, "evaluation")
    # Feedback history: each customer not holding a product at a month was, in effect, offered it; adding it by
    # the next month is an accept.
    tier_of = {
        c: next((code for code, label, _ in SEGMENT_TIERS if data.segment[c] == label), "other") for c in customers
    }
    impressions, accepts = Counter(), Counter()
    for c in customers:
        months = data.holdings[c]
        for before, after in zip(history, history[1:] + [current], strict=True):
            if before in months and after in months:
                for p in data.products:
                    if p not in months[before]:
                        impressions[(p, tier_of[c])] += 1
                        accepts[(p, tier_of[c])] += p in months[after]
    await conn.copy_records_to_table(
        "propensity_stat",
        columns=["product_code", "tier_code", "shard", "impressions", "accepts"],
        records=[(p, t, 0, n, accepts[(p, t)]) for (p, t), n in impressions.items()],
    )
    # plan the reads on real counts
    for table in ("customer", "holding", "holding_balance", "customer_aum_daily", "propensity_stat"):
        await session.execute(text(f"ANALYZE {table}"))


async def learned_rankings(
    sessionmaker: async_sessionmaker,
    data: Snapshots,
    current: str,
    customers: list[str],
    popularity: list[str],
    seed: int,
) -> tuple[dict[str, list[str]], dict]:
    """Train the learned ranker on the month pairs before `current` (the last one held out), then rank the products
    each customer does not hold by the model's propensity (products it does not know after, by popularity)."""
    month, today = date.fromisoformat(current).replace(day=1), date.fromisoformat(current)
    options = TrainingOptions(until=month, months=sum(1 for m in data.months if m < current), seed=seed)
    async with sessionmaker() as session:
        conn = await driver_connection(session)
        spec = await feature_spec(conn, SEGMENT_POLICY)
        result = await train_from_database(conn, spec, options, today)
        ids = dict(
            await conn.fetch("SELECT external_id, id FROM customer WHERE external_id = ANY($1::text[])", customers)
        )
        rows = await fetch_rows(conn, spec, [month], today, customer_ids=list(ids.values()))
    propensity = await asyncio.to_thread(result.model.propensities, rows)
    position = {customer_id: i for i, customer_id in enumerate(rows.customer_ids.tolist())}
    fallback = np.array([-popularity.index(p) if p in popularity else -len(popularity) for p in spec.products])
    rankings = {}
    for customer, customer_id in ids.items():
        scores = propensity[position[customer_id]]
        order = np.lexsort((-fallback, -np.nan_to_num(scores, nan=-1.0)))
        held = data.holdings[customer][current]
        rankings[customer] = [spec.products[j] for j in order if spec.products[j] not in held]
    return rankings, result.metrics


async def evaluate(
    sessionmaker: async_sessionmaker, settings: Settings, path: Path, limit_customers: int | None = None, seed: int = 7
) -> dict[str, float | int]:
    """Load the snapshots into the (empty, migrated) database behind `sessionmaker` and measure MAP@7."""
    data = read_snapshots(path)
    if len(data.months) < 2:
        raise ValueError("need at least two monthly snapshots")
    current, target = data.months[-2], data.months[-1]
    settings = settings.model_copy(update={"primary_policy": SEGMENT_POLICY, "holdout_share": 0.0})
    async with sessionmaker() as session:
        await load_snapshots(session, data, current)
        await session.commit()
    async with sessionmaker() as session:
        run = await runs.start_run(session, None, "evaluation")
        await session.commit()
    await runs.execute_run(sessionmaker, run.id, workers=settings.tier_run_workers)
    async with sessionmaker() as session:
        await ranking_stats.refresh_stats(session, SEGMENT_POLICY)
        await session.commit()
        popularity = [
            row[0]
            for row in (
                await session.execute(
                    text(
                        "SELECT product_code FROM product_holding_stat WHERE tier_code = '*' "
                        "ORDER BY holders DESC, product_code"
                    )
                )
            ).all()
        ]
        co = defaultdict(dict)
        for held, product, both, total in (
            await session.execute(text("SELECT held_code, product_code, holding_both, held_total FROM co_holding_stat"))
        ).all():
            co[held][product] = both / total
    customers = [c for c in data.holdings if current in data.holdings[c] and target in data.holdings[c]]
    customers = sorted(customers)[:limit_customers] if limit_customers else sorted(customers)
    now = datetime.combine(date.fromisoformat(current) + timedelta(days=1), time(), UTC)
    started = perf_counter()
    learned, learned_metrics = await learned_rankings(sessionmaker, data, current, customers, popularity, seed)
    learned_seconds = round(perf_counter() - started, 1)
    scores = {"learned": 0.0, "recommender": 0.0, "popularity": 0.0, "co_holding": 0.0}
    recommender = Recommender(settings, sessionmaker)
    for customer in customers:
        held = data.holdings[customer][current]
        added = data.holdings[customer][target] - held
        async with sessionmaker() as session:
            result = await recommender.recommend(
                await driver_connection(session),
                customer,
                channel="web",
                limit=K,
                explore=False,
                now=now,
                record=False,
                strategy="personalised",
            )
        scores["learned"] += average_precision(added, learned[customer])
        scores["recommender"] += average_precision(added, [item.product.code for item in result.items])
        scores["popularity"] += average_precision(added, [p for p in popularity if p not in held])
        candidates = [p for p in data.products if p not in held]
        plain = sorted(
            candidates,
            key=lambda p: (
                -sum(co[h].get(p, 0.0) for h in held) / max(len(held), 1),
                popularity.index(p) if p in popularity else 99,
            ),
        )
        scores["co_holding"] += average_precision(added, plain)
    n = len(customers)
    return {
        "customers": n,
        "month": current,
        "target_month": target,
        **{f"map7_{name}": round(total / n, 4) if n else 0.0 for name, total in scores.items()},
        "learned_seconds": learned_seconds,
        "learned_held_out_month": learned_metrics["held_out_month"],
        "learned_held_out_map7": learned_metrics["map7"],
        "learned_held_out_ece": learned_metrics["ece"],
    }
