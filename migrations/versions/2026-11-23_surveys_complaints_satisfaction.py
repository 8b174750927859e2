"""surveys complaints satisfaction: survey answers, complaints with their history, the per-customer satisfaction
summary, its columns in customer_features (and customer_features_for), and the indexes the reports read.

Revision ID: a5c0ffee0005
Revises: a4c0ffee0004
Create Date: 2026-11-23 01:35:28.606824
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'a5c0ffee0005'
down_revision: str | None = 'a4c0ffee0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen snapshot of the initial migration's FEATURES_SELECT with two more placeholders: the satisfaction
# columns (appended at the end of the select list, as CREATE OR REPLACE VIEW requires) and their LEFT JOIN.
# Formatted with them for the upgrade and without them for the downgrade, which restores the previous definitions.
FEATURES_SELECT = """
SELECT
    c.id AS customer_id,
    c.external_id,
    c.segment,
    c.risk_level,
    CASE WHEN c.risk_assessed_at >= now() - make_interval(
              days => coalesce(nullif(current_setting('tierwise.risk_valid_days', true), '')::int, 365))
         THEN c.risk_level END AS risk_tolerance,
    c.marketing_consent,
    c.attributes,
    c.birth_date,
    c.onboarded_at,
    date_part('year', age(current_date, c.birth_date))::int AS age,
    (date_part('year', age(now(), c.onboarded_at)) * 12 + date_part('month', age(now(), c.onboarded_at)))::int
        AS tenure_months,
    coalesce(h.aum, 0) AS aum,
    coalesce(avg3.aum_avg_3m, h.aum, 0) AS aum_avg_3m,
    round(coalesce(h.aum, 0) / nullif(coalesce(avg3.aum_avg_3m, h.aum), 0) - 1, 4) AS aum_trend_3m,
    coalesce(h.deposit_balance, 0) AS deposit_balance,
    coalesce(h.investment_balance, 0) AS investment_balance,
    coalesce(h.loan_balance, 0) AS loan_balance,
    coalesce(h.products_held_count, 0) AS products_held_count,
    coalesce(h.held_products, '{{}}') AS held_products,
    coalesce(h.held_categories, '{{}}') AS held_categories,
    coalesce(a.txn_count_90d, 0) AS txn_count_90d,
    coalesce(a.txn_amount_90d, 0) AS txn_amount_90d,
    (current_date - (c.last_txn_at AT TIME ZONE 'UTC')::date) AS days_since_last_txn,
    coalesce(a.logins_30d, 0) AS logins_30d,
    coalesce(a.referrals_12m, 0) AS referrals_12m{satisfaction_columns}
FROM customer c
LEFT JOIN (
    SELECT hd.customer_id,
           sum(hd.balance) FILTER (WHERE p.category IN ('deposit', 'wealth', 'fund', 'insurance')) AS aum,
           sum(hd.balance) FILTER (WHERE p.category = 'deposit') AS deposit_balance,
           sum(hd.balance) FILTER (WHERE p.category IN ('wealth', 'fund')) AS investment_balance,
           sum(hd.balance) FILTER (WHERE p.category IN ('loan', 'card')) AS loan_balance,
           count(*)::int AS products_held_count,
           array_agg(hd.product_code::text ORDER BY hd.product_code) AS held_products,
           array_agg(DISTINCT p.category::text) AS held_categories
    FROM holding hd JOIN product p ON p.code = hd.product_code
    WHERE true {holding_filter}
    GROUP BY hd.customer_id
) h ON h.customer_id = c.id
LEFT JOIN (
    -- time-weighted daily average over the trailing three months (91 days) of a step function of reported AUM
    SELECT s.customer_id,
           round(sum(s.aum * (least(coalesce(s.next_day, current_date + 1), current_date + 1)
                              - greatest(s.day, (current_date - 91))))
                 / nullif(sum(least(coalesce(s.next_day, current_date + 1), current_date + 1)
                              - greatest(s.day, (current_date - 91))), 0), 2) AS aum_avg_3m
    FROM (
        SELECT d.customer_id, d.day, d.aum, lead(d.day) OVER (PARTITION BY d.customer_id ORDER BY d.day) AS next_day
        FROM customer_aum_daily d
        WHERE d.day > (current_date - 456) AND d.day <= current_date {aum_filter}
    ) s
    WHERE coalesce(s.next_day, current_date + 1) > (current_date - 91)
    GROUP BY s.customer_id
) avg3 ON avg3.customer_id = c.id
LEFT JOIN (
    SELECT ad.customer_id,
           sum(ad.txn_count) FILTER (WHERE ad.day > current_date - 90)::int AS txn_count_90d,
           sum(ad.txn_amount) FILTER (WHERE ad.day > current_date - 90) AS txn_amount_90d,
           sum(ad.logins) FILTER (WHERE ad.day > current_date - 30)::int AS logins_30d,
           sum(ad.referrals)::int AS referrals_12m
    FROM customer_activity_daily ad
    WHERE ad.day > (current_date - 365) AND ad.day <= current_date {activity_filter}
    GROUP BY ad.customer_id
) a ON a.customer_id = c.id{satisfaction_join}
WHERE c.erased_at IS NULL {customer_filter}
"""

SATISFACTION_COLUMNS = """,
    s.nps_latest::int AS nps_latest,
    coalesce(s.nps_latest >= 9, false) AS is_promoter,
    coalesce(s.nps_latest <= 6, false) AS is_detractor,
    round(s.csat_sum::numeric / nullif(s.csat_count, 0), 2) AS csat_avg,
    coalesce(s.open_complaints, 0) AS open_complaints,
    round(s.resolve_days_sum / nullif(s.resolved_count, 0), 2) AS days_to_resolve_avg"""

SATISFACTION_JOIN = """
LEFT JOIN customer_satisfaction s ON s.customer_id = c.id"""

VIEW_FILTERS = {"holding_filter": "", "aum_filter": "", "activity_filter": "", "customer_filter": ""}
FUNCTION_FILTERS = {"holding_filter": "AND hd.customer_id = ANY(ids)", "aum_filter": "AND d.customer_id = ANY(ids)",
                    "activity_filter": "AND ad.customer_id = ANY(ids)", "customer_filter": "AND c.id = ANY(ids)"}
RANGE_FILTERS = {name: f"AND {column} BETWEEN id_from AND id_to" for name, column in (
    ("holding_filter", "hd.customer_id"), ("aum_filter", "d.customer_id"), ("activity_filter", "ad.customer_id"),
    ("customer_filter", "c.id"))}


def features_view(satisfaction: bool) -> str:
    extra = {"satisfaction_columns": SATISFACTION_COLUMNS if satisfaction else "",
             "satisfaction_join": SATISFACTION_JOIN if satisfaction else ""}
    return "CREATE OR REPLACE VIEW customer_features AS" + FEATURES_SELECT.format(**VIEW_FILTERS, **extra)


def features_function(satisfaction: bool) -> str:
    extra = {"satisfaction_columns": SATISFACTION_COLUMNS if satisfaction else "",
             "satisfaction_join": SATISFACTION_JOIN if satisfaction else ""}
    return ("CREATE FUNCTION customer_features_for(ids bigint[]) RETURNS SETOF customer_features "
            "LANGUAGE sql STABLE PARALLEL SAFE AS $features$" + FEATURES_SELECT.format(**FUNCTION_FILTERS, **extra)
            + "$features$")


def features_range_function(satisfaction: bool) -> str:
    extra = {"satisfaction_columns": SATISFACTION_COLUMNS if satisfaction else "",
             "satisfaction_join": SATISFACTION_JOIN if satisfaction else ""}
    return ("CREATE FUNCTION customer_features_between(id_from bigint, id_to bigint) RETURNS SETOF customer_features "
            "LANGUAGE sql STABLE PARALLEL SAFE AS $features$" + FEATURES_SELECT.format(**RANGE_FILTERS, **extra)
            + "$features$")


def upgrade() -> None:
    op.create_table('complaint',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('event_id', sa.String(length=100), nullable=False),
    sa.Column('category', sa.String(length=20), nullable=False),
    sa.Column('channel', sa.String(length=20), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=12), server_default=sa.text("'open'"), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("category IN ('fees', 'service', 'app', 'product', 'fraud', 'other')", name=op.f('ck_complaint_category')),
    sa.CheckConstraint("status IN ('open', 'in_progress', 'resolved', 'closed')", name=op.f('ck_complaint_status')),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_complaint_customer_id_customer'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_complaint'))
    )
    op.create_index('ix_complaint_customer', 'complaint', ['customer_id', 'id'], unique=False)
    op.create_index('ix_complaint_opened', 'complaint', ['opened_at'], unique=False)
    op.create_index('ix_complaint_status', 'complaint', ['status', 'id'], unique=False)
    op.create_index('uq_complaint_customer_id_event_id', 'complaint', ['customer_id', 'event_id'], unique=True)
    op.create_table('customer_satisfaction',
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('nps_latest', sa.SmallInteger(), nullable=True),
    sa.Column('nps_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('csat_sum', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('csat_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('open_complaints', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('resolved_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('resolve_days_sum', sa.Numeric(precision=14, scale=4), server_default=sa.text('0'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_customer_satisfaction_customer_id_customer'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('customer_id', name=op.f('pk_customer_satisfaction'))
    )
    op.create_table('survey_response',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('event_id', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=4), nullable=False),
    sa.Column('score', sa.SmallInteger(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('channel', sa.String(length=20), nullable=False),
    sa.Column('touchpoint', sa.String(length=40), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("(kind = 'nps' AND score BETWEEN 0 AND 10) OR (kind = 'csat' AND score BETWEEN 1 AND 5)", name=op.f('ck_survey_response_score')),
    sa.CheckConstraint("kind IN ('nps', 'csat')", name=op.f('ck_survey_response_kind')),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_survey_response_customer_id_customer'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_survey_response'))
    )
    op.create_index('ix_survey_response_kind_occurred', 'survey_response', ['kind', 'occurred_at'], unique=False, postgresql_include=['customer_id', 'score'])
    op.create_index('uq_survey_response_customer_id_event_id', 'survey_response', ['customer_id', 'event_id'], unique=True)
    op.create_table('complaint_transition',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('complaint_id', sa.BigInteger(), nullable=False),
    sa.Column('from_status', sa.String(length=12), nullable=True),
    sa.Column('to_status', sa.String(length=12), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['complaint_id'], ['complaint.id'], name=op.f('fk_complaint_transition_complaint_id_complaint'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_complaint_transition'))
    )
    op.create_index('ix_complaint_transition_complaint', 'complaint_transition', ['complaint_id', 'id'], unique=False)
    # the reports: funnel over a time range from the index alone; tier moves of a policy in a time range
    op.create_index('ix_feedback_event_funnel', 'feedback_event', ['occurred_at'], unique=False, postgresql_include=['recommendation_id', 'kind', 'product_code', 'tier_code', 'strategy'])
    op.create_index('ix_tier_transition_policy_at', 'tier_transition', ['policy_id', 'at'], unique=False)

    # the satisfaction columns, appended to the view; the function's row type is the view's, so it is recreated
    op.execute("DROP FUNCTION customer_features_between(bigint, bigint)")
    op.execute("DROP FUNCTION customer_features_for(bigint[])")
    op.execute(features_view(satisfaction=True))
    op.execute(features_function(satisfaction=True))
    op.execute(features_range_function(satisfaction=True))


def downgrade() -> None:
    # a view cannot lose columns with CREATE OR REPLACE: drop both and restore the previous definitions
    op.execute("DROP FUNCTION customer_features_between(bigint, bigint)")
    op.execute("DROP FUNCTION customer_features_for(bigint[])")
    op.execute("DROP VIEW customer_features")
    op.execute(features_view(satisfaction=False).replace("CREATE OR REPLACE VIEW", "CREATE VIEW", 1))
    op.execute(features_function(satisfaction=False))
    op.execute(features_range_function(satisfaction=False))

    op.drop_index('ix_tier_transition_policy_at', table_name='tier_transition')
    op.drop_index('ix_feedback_event_funnel', table_name='feedback_event')
    op.drop_index('ix_complaint_transition_complaint', table_name='complaint_transition')
    op.drop_table('complaint_transition')
    op.drop_index('uq_survey_response_customer_id_event_id', table_name='survey_response')
    op.drop_index('ix_survey_response_kind_occurred', table_name='survey_response')
    op.drop_table('survey_response')
    op.drop_table('customer_satisfaction')
    op.drop_index('uq_complaint_customer_id_event_id', table_name='complaint')
    op.drop_index('ix_complaint_status', table_name='complaint')
    op.drop_index('ix_complaint_opened', table_name='complaint')
    op.drop_index('ix_complaint_customer', table_name='complaint')
    op.drop_table('complaint')
