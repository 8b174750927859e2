"""Activity event intake: a batch of events for many customers stored in one statement, with the daily rollups, the
last transaction times, the offer states marked stale and the customers marked for re-tiering (app.customers.retier).

Concurrent intakes of the same customers share their rows (app.customers.locks) and queue only on the rows they both
write, from that write until their commit; the statement writes each table in customer-id order (events, rollups,
last transaction times, offer-state generations, marks), so they never deadlock. Everything after the first shared
row is written in that one statement, with no round trip between: the rows another intake waits for are held for
as short a time as the statement allows (with the offer states and marks as two more statements, an intake held
its customers' rows across two more round trips, and under four concurrent intakes most of a request's time was
spent waiting for another's commit: bench/RESULTS.md)."""

from datetime import UTC, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InvalidFields
from app.customers import retier
from app.customers.intake_schemas import EventBatch
from app.customers.locks import share_customers
from app.customers.service import ACTIVITY_METRICS
from app.recommendations import offer_state

# RFC 3339 (and the published pattern) allows offsets to +-23:59; Postgres reads them to +-15:59.
_POSTGRES_OFFSETS = timedelta(hours=16)

# One round trip: store new events (a retried event_id does nothing), roll the new ones up per customer and day,
# advance each customer's last transaction time (a row it would not move is not written), then mark every
# customer of the batch: its offer state stale (offer_state.MARK_STALE_SQL, :ids and :changed) and waiting for
# the re-tiering worker (retier.MARK_SQL, :ids and :scope). Only rows actually inserted reach the rollups. The
# final SELECT reads each data-modifying CTE in turn, which runs them in that order (one left unread would run
# after the query, in an order Postgres does not promise).
_INGEST_EVENTS = text(f"""
WITH incoming AS (  -- the request's own JSON, validated already (app.customers.intake_schemas.EventBatch)
    SELECT x.id AS customer_id, e.event_id, e.type AS kind, e.occurred_at, e.amount, e.direction,
           CASE WHEN e.type = 'login' THEN coalesce(e.channel, 'mobile') ELSE e.channel END AS channel
    FROM jsonb_to_recordset(CAST(:body AS jsonb) -> 'events') AS e(
        event_id text, customer_id text, type text, occurred_at timestamptz, amount numeric, direction text,
        channel text)
    JOIN unnest(CAST(:external_ids AS text[]), CAST(:known_ids AS bigint[])) AS x(external_id, id)
      ON x.external_id = e.customer_id
    ORDER BY 1, 2
), inserted AS (
    INSERT INTO customer_event (customer_id, event_id, kind, occurred_at, amount, direction, channel)
    SELECT DISTINCT ON (customer_id, event_id) customer_id, event_id, kind, occurred_at, amount, direction, channel
    FROM incoming i
    WHERE NOT EXISTS (  -- the same event_id sent again with another occurred_at (app/core/partitions.py)
        SELECT 1 FROM customer_event e WHERE e.customer_id = i.customer_id AND e.event_id = i.event_id
          AND e.occurred_at BETWEEN i.occurred_at - interval '7 days' AND i.occurred_at + interval '7 days')
    ORDER BY customer_id, event_id
    ON CONFLICT (customer_id, event_id, occurred_at) DO NOTHING
    RETURNING customer_id, kind, occurred_at, amount
), rolled AS (
    INSERT INTO customer_activity_daily AS d (customer_id, day, txn_count, txn_amount, logins, referrals)
    SELECT customer_id, (occurred_at AT TIME ZONE 'UTC')::date,
           count(*) FILTER (WHERE kind = 'transaction'),
           coalesce(sum(amount) FILTER (WHERE kind = 'transaction'), 0),
           count(*) FILTER (WHERE kind = 'login'),
           count(*) FILTER (WHERE kind = 'referral')
    FROM inserted GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (customer_id, day) DO UPDATE SET
        txn_count = d.txn_count + excluded.txn_count, txn_amount = d.txn_amount + excluded.txn_amount,
        logins = d.logins + excluded.logins, referrals = d.referrals + excluded.referrals
    RETURNING 1
), moved AS (  -- the customers whose last transaction time moves, their rows locked in id order
    SELECT c.id, t.last_at FROM customer c
    JOIN (SELECT customer_id, max(occurred_at) AS last_at FROM inserted WHERE kind = 'transaction' GROUP BY 1) t
      ON c.id = t.customer_id
    WHERE c.last_txn_at IS NULL OR c.last_txn_at < t.last_at
    ORDER BY c.id FOR NO KEY UPDATE OF c
), last_txn AS (
    UPDATE customer c SET last_txn_at = greatest(c.last_txn_at, m.last_at) FROM moved m WHERE c.id = m.id
    RETURNING 1
), stale AS (
    {offer_state.MARK_STALE_SQL}
    RETURNING 1
), marked AS (
    {retier.MARK_SQL}
    RETURNING 1
)
SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM rolled), (SELECT count(*) FROM last_txn),
       (SELECT count(*) FROM stale), (SELECT count(*) FROM marked)
""")


def _read_by_postgres(event) -> bool:
    """Whether Postgres reads the event's time as sent: a CheckedEventBatch's texts were checked for it."""
    return isinstance(event.occurred_at, str) or abs(event.occurred_at.utcoffset()) < _POSTGRES_OFFSETS


# One statement whatever the batch's size (an IN list of as many parameters is prepared anew for each size).
_IDS_OF_EXTERNAL = text(
    "SELECT external_id, id FROM customer WHERE external_id = ANY(CAST(:external_ids AS text[])) AND erased_at IS NULL"
)


def _refuse_unknown_customers(events: list, ids: dict[str, int]) -> None:
    """422 naming each event whose customer is not in `ids` (external id -> id)."""
    errors = [
        {"pointer": f"/events/{i}/customer_id", "detail": f"unknown customer '{e.customer_id}'"}
        for i, e in enumerate(events)
        if e.customer_id not in ids
    ]
    if errors:
        raise InvalidFields(errors[:100])


async def ingest(session: AsyncSession, events: list, body: str | None = None) -> int:
    """Store a batch of events for many customers; how many were new. Unknown customers are a 422 naming each
    offending event; nothing is stored then. Every customer of the batch has their offer state marked stale and is
    re-tiered by the worker's next batch within the stated lag (app.customers.retier), which marks the offer states
    stale again with the new tiers. body: the request's JSON that `events` were validated from; the statement reads
    the events from it (no array per column built and encoded here: bench/RESULTS.md); from code, made from `events`."""
    external_ids = sorted({e.customer_id for e in events})
    ids = dict((await session.execute(_IDS_OF_EXTERNAL, {"external_ids": external_ids})).all())
    _refuse_unknown_customers(events, ids)
    # Share the batch's customers' rows in id order first (other intakes share them too; an erasure or a re-tiering
    # batch holding one is waited for, and waits for this). A customer erased while the batch waited for it is
    # unknown now: nothing of the batch is stored (the erasure has taken what was stored before).
    live = await share_customers(session, ids.values())
    if len(live) < len(ids):
        _refuse_unknown_customers(events, {external_id: i for external_id, i in ids.items() if i in live})
    if body is None or not all(map(_read_by_postgres, events)):
        # called from code, or a time whose offset Postgres does not read: the JSON made from the events, in UTC
        utc = [e.model_copy(update={"occurred_at": e.occurred_at.astimezone(UTC)}) for e in events]
        body = EventBatch(events=utc).model_dump_json()
    # :known_ids pairs with :external_ids; :ids (the marks' customers) is another parameter of the statement
    known = {"external_ids": list(ids), "known_ids": list(ids.values())}
    marks = {"ids": sorted(live), "changed": sorted(ACTIVITY_METRICS), "scope": retier.ACTIVITY}
    recorded = (await session.execute(_INGEST_EVENTS, {"body": body, **known, **marks})).scalar_one()
    return recorded or 0
