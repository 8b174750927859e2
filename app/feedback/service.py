"""Feedback operations: recommendation events (set-based, idempotent, with propensity counts and conversions),
survey answers and complaints, each keeping the customer's satisfaction summary in the same statement.

Comments and descriptions are customers' own words: nothing here logs them, and an erasure takes them
(`erase_customer_words`, from app.customers.flows.erase_customer)."""

import hashlib
import hmac
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Row, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InvalidInput
from app.core.metrics import FEEDBACK_EVENTS, count_on_commit
from app.core.pagination import PageRequest, keyset
from app.customers import service as customers_service
from app.customers.errors import CustomerNotFound
from app.customers.locks import lock_customers
from app.customers.models import Customer
from app.feedback.errors import SurveyNotFound
from app.feedback.models import SurveyResponse
from app.feedback.schemas import FeedbackEventIn, SurveyIn
from app.products.quotas import Conversion
from app.recommendations.served import LIST_OF, RANK_OF

PROPENSITY_SHARDS = 16
NO_TIER = "-"
"""propensity_stat.tier_code of items served to customers without a tier in the primary policy."""


# ---- recommendation feedback -------------------------------------------------------------------------------

# One round trip per batch: resolve each event's item (product, tier, strategy, list channel), store the events
# that answer an item of their customer (a retried event_id does nothing), add only the newly stored ones to the
# propensity counts of one shard, and record a holding for each new conversion. Each item's customer is read with
# the key-share lock the stored event's foreign key takes anyway: an erasure in flight finishes first, and its
# customer's events are then rejected (nothing of theirs is stored after the erasure). Counting is a sum over stored
# events, so late and out-of-order events count once and the same whatever their order.
_INGEST_FEEDBACK = text(f"""
WITH incoming AS (
    SELECT * FROM unnest(
        CAST(:idx AS int[]), CAST(:external_ids AS text[]), CAST(:event_ids AS text[]),
        CAST(:recommendation_ids AS uuid[]), CAST(:kinds AS text[]), CAST(:occurred AS timestamptz[]),
        CAST(:channels AS text[]), CAST(:product_codes AS text[]), CAST(:amounts AS numeric[])
    ) AS t(idx, external_id, event_id, recommendation_id, kind, occurred_at, channel, product_code, amount)
), checked AS (
    SELECT i.*, ri.customer_id, ri.product_code AS item_product, ri.tier_code, ri.strategy,
           ri.channel AS list_channel, c.external_id AS item_customer
    FROM incoming i
    LEFT JOIN LATERAL (  -- the served item: in the list its id names, at the rank its low bits hold; or by its own
                         -- id in a list converted from the former row-per-item store (app/recommendations/models.py)
        SELECT l.customer_id, l.product_codes[r.rank] AS product_code, l.tier_code, l.strategy, l.channel
        FROM (SELECT {LIST_OF.format(rid="i.recommendation_id")} AS id,
                     {RANK_OF.format(rid="i.recommendation_id")} AS rank) r
        JOIN recommendation_list l ON l.id = r.id
        WHERE l.product_codes[r.rank] IS NOT NULL
        UNION ALL
        SELECT l.customer_id, l.product_codes[array_position(l.legacy_ids, i.recommendation_id)], l.tier_code,
               l.strategy, l.channel
        FROM recommendation_list l
        WHERE l.legacy_ids @> ARRAY[i.recommendation_id] AND l.legacy_ids IS NOT NULL
        LIMIT 1
    ) ri ON true
    LEFT JOIN LATERAL (
        SELECT external_id FROM customer WHERE id = ri.customer_id AND erased_at IS NULL FOR KEY SHARE
    ) c ON true
), inserted AS (
    INSERT INTO feedback_event (customer_id, event_id, recommendation_id, product_code, tier_code, channel,
                                strategy, kind, occurred_at)
    SELECT DISTINCT ON (customer_id, event_id) customer_id, event_id, recommendation_id, item_product, tier_code,
           coalesce(channel, list_channel), strategy, kind, occurred_at
    FROM checked c
    WHERE item_customer = external_id AND (product_code IS NULL OR product_code = item_product)
      AND NOT EXISTS (  -- the same event_id sent again with another occurred_at (app/core/partitions.py)
          SELECT 1 FROM feedback_event f WHERE f.customer_id = c.customer_id AND f.event_id = c.event_id
            AND f.occurred_at BETWEEN c.occurred_at - interval '7 days' AND c.occurred_at + interval '7 days')
    ORDER BY customer_id, event_id, idx
    ON CONFLICT (customer_id, event_id, occurred_at) DO NOTHING
    RETURNING customer_id, event_id, product_code, tier_code, kind, occurred_at
), converted AS (  -- the new conversions, each with its amount (the first of an event_id sent twice in the batch)
    SELECT DISTINCT ON (i.customer_id, i.event_id) i.customer_id, i.event_id, i.product_code, c.amount
    FROM inserted i JOIN checked c ON c.customer_id = i.customer_id AND c.event_id = i.event_id
    WHERE i.kind = 'convert' ORDER BY i.customer_id, i.event_id, c.idx
), counted AS (
    INSERT INTO propensity_stat AS ps (product_code, tier_code, shard, impressions, clicks, accepts, dismisses,
                                       converts)
    SELECT product_code, coalesce(tier_code, '{NO_TIER}'), :shard,
           count(*) FILTER (WHERE kind = 'impression'), count(*) FILTER (WHERE kind = 'click'),
           count(*) FILTER (WHERE kind = 'accept'), count(*) FILTER (WHERE kind = 'dismiss'),
           count(*) FILTER (WHERE kind = 'convert')
    FROM inserted GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (product_code, tier_code, shard) DO UPDATE SET
        impressions = ps.impressions + excluded.impressions, clicks = ps.clicks + excluded.clicks,
        accepts = ps.accepts + excluded.accepts, dismisses = ps.dismisses + excluded.dismisses,
        converts = ps.converts + excluded.converts
), held AS (
    INSERT INTO holding (customer_id, product_code, opened_at, balance, as_of)
    SELECT customer_id, product_code, min((occurred_at AT TIME ZONE 'UTC')::date), 0, current_date
    FROM inserted WHERE kind = 'convert' GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (customer_id, product_code) DO NOTHING
    RETURNING customer_id
)
SELECT (SELECT count(*) FROM inserted) AS accepted,
       ARRAY(SELECT DISTINCT customer_id FROM held) AS converted_customers,
       ARRAY(SELECT customer_id FROM converted ORDER BY customer_id, event_id) AS convert_customers,
       ARRAY(SELECT product_code FROM converted ORDER BY customer_id, event_id) AS convert_products,
       ARRAY(SELECT amount FROM converted ORDER BY customer_id, event_id) AS convert_amounts,
       ARRAY(SELECT idx FROM checked WHERE item_product IS NULL) AS unknown,
       ARRAY(SELECT idx FROM checked WHERE item_product IS NOT NULL
                                     AND item_customer IS DISTINCT FROM external_id) AS other_customer,
       ARRAY(SELECT idx FROM checked WHERE item_customer = external_id AND product_code <> item_product)
           AS other_product
""")


@dataclass
class FeedbackIntake:
    accepted: int = 0
    duplicates: int = 0
    rejections: list[dict[str, Any]] = field(default_factory=list)
    converted_customers: list[int] = field(default_factory=list)
    conversions: list[Conversion] = field(default_factory=list)
    """The new convert events, for the products' quotas (app.products.quotas)."""


def propensity_shard() -> int:
    """The propensity_stat shard one batch adds to. A batch touches one shard per (product, tier), so concurrent
    batches mostly update different rows instead of queuing on one (a product's counts sum over its shards)."""
    return secrets.randbelow(PROPENSITY_SHARDS)


async def ingest_feedback(session: AsyncSession, events: list[tuple[int, FeedbackEventIn]]) -> FeedbackIntake:
    """Store a batch of (index, event); events that answer no item of their customer are rejected one by one."""
    result = FeedbackIntake()
    if not events:
        return result
    columns: dict[str, list] = defaultdict(list)
    for index, event in events:
        columns["idx"].append(index)
        columns["external_ids"].append(event.customer_id)
        columns["event_ids"].append(event.event_id)
        columns["recommendation_ids"].append(event.recommendation_id)
        columns["kinds"].append(event.type)
        columns["occurred"].append(event.occurred_at)
        columns["channels"].append(event.channel)
        columns["product_codes"].append(event.product_code)
        columns["amounts"].append(event.amount if event.type == "convert" else None)
    row = (await session.execute(_INGEST_FEEDBACK, {**columns, "shard": propensity_shard()})).one()
    by_index = dict(events)
    for index in row.unknown:
        result.rejections.append(
            {
                "index": index,
                "pointer": f"/events/{index}/recommendation_id",
                "detail": f"no recommendation {by_index[index].recommendation_id}",
            }
        )
    for index in row.other_customer:
        result.rejections.append(
            {
                "index": index,
                "pointer": f"/events/{index}/recommendation_id",
                "detail": f"recommendation {by_index[index].recommendation_id} was not made to "
                f"customer '{by_index[index].customer_id}'",
            }
        )
    for index in row.other_product:
        result.rejections.append(
            {
                "index": index,
                "pointer": f"/events/{index}/product_code",
                "detail": f"recommendation {by_index[index].recommendation_id} is not for product "
                f"'{by_index[index].product_code}'",
            }
        )
    result.accepted = row.accepted
    result.duplicates = len(events) - len(result.rejections) - row.accepted
    result.converted_customers = sorted(row.converted_customers)
    result.conversions = [
        Conversion(product, customer, "convert", amount)
        for customer, product, amount in zip(
            row.convert_customers, row.convert_products, row.convert_amounts, strict=True
        )
    ]
    for outcome, amount in (
        ("accepted", result.accepted),
        ("duplicate", result.duplicates),
        ("rejected", len(result.rejections)),
    ):
        count_on_commit(session, FEEDBACK_EVENTS.labels(outcome), amount)
    return result


# ---- surveys -----------------------------------------------------------------------------------------------

# Store the answer once per (customer, event_id) and, only when it is new, fold it into the summary: the latest NPS
# by time (an older answer arriving late does not replace a newer one), the CSAT sum and count.
_RECORD_SURVEY = text("""
WITH inserted AS (
    INSERT INTO survey_response (customer_id, event_id, kind, score, comment, channel, touchpoint, occurred_at)
    VALUES (:customer_id, :event_id, :kind, :score, :comment, :channel, :touchpoint, :occurred_at)
    ON CONFLICT (customer_id, event_id) DO NOTHING
    RETURNING id, customer_id, kind, score, occurred_at
), summary AS (
    INSERT INTO customer_satisfaction AS cs (customer_id, nps_latest, nps_at, csat_sum, csat_count)
    SELECT customer_id, CASE WHEN kind = 'nps' THEN score END, CASE WHEN kind = 'nps' THEN occurred_at END,
           CASE WHEN kind = 'csat' THEN score ELSE 0 END, CASE WHEN kind = 'csat' THEN 1 ELSE 0 END
    FROM inserted
    ON CONFLICT (customer_id) DO UPDATE SET
        nps_latest = CASE WHEN excluded.nps_at >= cs.nps_at OR cs.nps_at IS NULL
                          THEN coalesce(excluded.nps_latest, cs.nps_latest) ELSE cs.nps_latest END,
        nps_at = greatest(cs.nps_at, excluded.nps_at),
        csat_sum = cs.csat_sum + excluded.csat_sum, csat_count = cs.csat_count + excluded.csat_count,
        updated_at = now()
)
SELECT id FROM inserted
""")


async def locked_customer_id(session: AsyncSession, external_id: str) -> int:
    """The customer a survey answer or complaint is for, locked (app.customers.locks) before anything of theirs is
    written: an erasure of the customer in flight finishes first, and the customer is then unknown (their words
    are never stored after the erasure took the rest)."""
    try:
        customer_id = await customers_service.customer_id_of(session, external_id)
    except CustomerNotFound:
        customer_id = None
    if customer_id is None or customer_id not in await lock_customers(session, [customer_id]):
        raise InvalidInput("/customer_id", f"unknown customer '{external_id}'")
    return customer_id


async def record_survey(session: AsyncSession, body: SurveyIn) -> tuple[SurveyResponse, int, bool]:
    """Store a survey answer; (the answer, customer id, True when new). A retry returns the stored answer."""
    customer_id = await locked_customer_id(session, body.customer_id)
    new_id = await session.scalar(
        _RECORD_SURVEY, {"customer_id": customer_id, **body.model_dump(exclude={"customer_id"})}
    )
    survey = await session.scalar(
        select(SurveyResponse).where(
            SurveyResponse.customer_id == customer_id, SurveyResponse.event_id == body.event_id
        )
    )
    return survey, customer_id, new_id is not None


async def rows_with_customer(
    session: AsyncSession, model, page: PageRequest, customer: str | None, *conditions: ColumnElement[bool]
) -> list[Row]:
    """One page of (row, customer external id) of a feedback table (survey answers, complaints) in id order (limit
    + 1 rows, for Page.of), of one customer (its external id) or all, and matching every condition."""
    query = select(model, Customer.external_id).join(Customer, Customer.id == model.customer_id).where(*conditions)
    if customer is not None:
        query = query.where(Customer.external_id == customer)
    return list((await session.execute(keyset(query, model.id, page))).all())


async def list_surveys(
    session: AsyncSession, page: PageRequest, *, customer: str | None, kind: str | None
) -> list[Row]:
    """(survey answer, external id) rows in id order, limit + 1 of them."""
    conditions = [] if kind is None else [SurveyResponse.kind == kind]
    return await rows_with_customer(session, SurveyResponse, page, customer, *conditions)


async def get_survey(session: AsyncSession, survey_id: int) -> Row:
    """A survey answer with its customer's external id."""
    row = (
        await session.execute(
            select(SurveyResponse, Customer.external_id)
            .join(Customer, Customer.id == SurveyResponse.customer_id)
            .where(SurveyResponse.id == survey_id)
        )
    ).one_or_none()
    if row is None:
        raise SurveyNotFound(survey_id)
    return row


# ---- erasure -----------------------------------------------------------------------------------------------

REDACTED = "[redacted: the customer was erased]"
"""What an erased customer's complaint description becomes (the column is required, and a reader should see why)."""

_EVENT_ID_TABLES = ("feedback_event", "survey_response", "complaint")


def erased_event_id(event_id: str, secret: str) -> str:
    """What a client's event id becomes when its customer is erased: keyed (the raw id, which may embed the
    customer's external id, cannot be recovered or confirmed by guessing without the key), and distinct for
    distinct ids, so each row stays unique per (customer, event_id)."""
    return "erased:" + hmac.new(secret.encode(), b"event:" + event_id.encode(), hashlib.sha256).hexdigest()[:40]


async def erase_customer_words(session: AsyncSession, customer_id: int, secret: str) -> None:
    """The feedback domain's part of an erasure: survey comments go (scores stay, anonymous), complaint
    descriptions are redacted and transition notes go (the complaint record stays: category, channel, status
    history, actors and dates), and client event ids are replaced by their keyed hashes."""
    await session.execute(
        text("UPDATE survey_response SET comment = NULL WHERE customer_id = :id AND comment IS NOT NULL"),
        {"id": customer_id},
    )
    await session.execute(
        text("UPDATE complaint SET description = :redacted WHERE customer_id = :id"),
        {"id": customer_id, "redacted": REDACTED},
    )
    await session.execute(
        text("UPDATE complaint_transition SET note = NULL WHERE customer_id = :id AND note IS NOT NULL"),
        {"id": customer_id},
    )
    for table in _EVENT_ID_TABLES:
        found = text(f"SELECT id, event_id FROM {table} WHERE customer_id = :id")
        rows = (await session.execute(found, {"id": customer_id})).all()
        if rows:
            await session.execute(
                text(
                    f"UPDATE {table} t SET event_id = h.event_id FROM unnest(CAST(:ids AS bigint[]), "
                    "CAST(:event_ids AS text[])) AS h(id, event_id) WHERE t.customer_id = :customer_id AND t.id = h.id"
                ),
                {
                    "customer_id": customer_id,
                    "ids": [row.id for row in rows],
                    "event_ids": [erased_event_id(row.event_id, secret) for row in rows],
                },
            )
