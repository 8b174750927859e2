"""initial schema

Revision ID: 2010707db7d5
Revises: 
Create Date: 2026-11-23 01:00:48.700713
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '2010707db7d5'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# One row per live customer with every built-in metric rules can use. Time-relative metrics are computed
# against now(), so they stay correct as days pass; sums come from rollups maintained on write.
# One SELECT, three uses: the view (the whole population, set-based), and the same rows for given customers
# (customer_features_for(ids)) or an id range (customer_features_between(from, to)) with the filter pushed into
# every aggregate, so one customer or one chunk never aggregates the whole population.
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
    coalesce(a.referrals_12m, 0) AS referrals_12m
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
) a ON a.customer_id = c.id
WHERE c.erased_at IS NULL {customer_filter}
"""


CUSTOMER_FEATURES_VIEW = "CREATE VIEW customer_features AS" + FEATURES_SELECT.format(
    holding_filter="", aum_filter="", activity_filter="", customer_filter="")

# Some customers by id (one, or an intake batch): index probes per id.
CUSTOMER_FEATURES_FUNCTION = (
    "CREATE FUNCTION customer_features_for(ids bigint[]) RETURNS SETOF customer_features "
    "LANGUAGE sql STABLE PARALLEL SAFE AS $features$" + FEATURES_SELECT.format(
        holding_filter="AND hd.customer_id = ANY(ids)", aum_filter="AND d.customer_id = ANY(ids)",
        activity_filter="AND ad.customer_id = ANY(ids)", customer_filter="AND c.id = ANY(ids)")
    + "$features$")

# A range of ids (a chunk of a batch run): one index range scan per table.
CUSTOMER_FEATURES_RANGE_FUNCTION = (
    "CREATE FUNCTION customer_features_between(id_from bigint, id_to bigint) RETURNS SETOF customer_features "
    "LANGUAGE sql STABLE PARALLEL SAFE AS $features$" + FEATURES_SELECT.format(
        holding_filter="AND hd.customer_id BETWEEN id_from AND id_to",
        aum_filter="AND d.customer_id BETWEEN id_from AND id_to",
        activity_filter="AND ad.customer_id BETWEEN id_from AND id_to",
        customer_filter="AND c.id BETWEEN id_from AND id_to")
    + "$features$")


def upgrade() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    op.create_table('api_key',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('scopes', sa.ARRAY(sa.Text()), nullable=False),
    sa.Column('lookup_id', sa.String(length=12), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_key')),
    sa.UniqueConstraint('lookup_id', name=op.f('uq_api_key_lookup_id'))
    )
    op.create_table('custom_attribute_definition',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('type', sa.String(length=20), nullable=False),
    sa.Column('description', sa.Text(), server_default=sa.text("''"), nullable=False),
    sa.Column('unit', sa.String(length=20), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("type IN ('number', 'integer', 'string', 'boolean', 'date', 'string_set')", name=op.f('ck_custom_attribute_definition_type')),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_custom_attribute_definition'))
    )
    op.create_table('customer',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.Column('segment', sa.String(length=20), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=True),
    sa.Column('birth_date', sa.Date(), nullable=True),
    sa.Column('onboarded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('risk_level', sa.SmallInteger(), nullable=True),
    sa.Column('risk_assessed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('marketing_consent', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('attributes', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('last_txn_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('erased_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("segment IN ('retail', 'small_business')", name=op.f('ck_customer_segment')),
    sa.CheckConstraint('risk_level BETWEEN 1 AND 5', name=op.f('ck_customer_risk_level')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer')),
    sa.UniqueConstraint('external_id', name=op.f('uq_customer_external_id'))
    )
    op.create_table('product',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('category', sa.String(length=20), nullable=False),
    sa.Column('risk_level', sa.SmallInteger(), nullable=False),
    sa.Column('min_amount', sa.Numeric(precision=18, scale=2), server_default=sa.text('0'), nullable=False),
    sa.Column('channels', sa.ARRAY(sa.Text()), nullable=False),
    sa.Column('active_from', sa.DateTime(timezone=True), nullable=True),
    sa.Column('active_to', sa.DateTime(timezone=True), nullable=True),
    sa.Column('value_weight', sa.Numeric(precision=8, scale=4), server_default=sa.text('1'), nullable=False),
    sa.Column('lever', sa.Numeric(precision=8, scale=4), server_default=sa.text('1'), nullable=False),
    sa.Column('target_tiers', sa.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('eligibility', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('is_service', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('description', sa.Text(), server_default=sa.text("''"), nullable=False),
    sa.Column('is_active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("category IN ('deposit', 'wealth', 'fund', 'insurance', 'loan', 'card')", name=op.f('ck_product_category')),
    sa.CheckConstraint('risk_level BETWEEN 1 AND 5', name=op.f('ck_product_risk_level')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_product')),
    sa.UniqueConstraint('code', name=op.f('uq_product_code'))
    )
    op.create_table('customer_activity_daily',
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('txn_count', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('txn_amount', sa.Numeric(precision=18, scale=2), server_default=sa.text('0'), nullable=False),
    sa.Column('logins', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('referrals', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_customer_activity_daily_customer_id_customer'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('customer_id', 'day', name=op.f('pk_customer_activity_daily'))
    )
    op.create_table('customer_aum_daily',
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('aum', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_customer_aum_daily_customer_id_customer'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('customer_id', 'day', name=op.f('pk_customer_aum_daily'))
    )
    op.create_table('customer_event',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('event_id', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('amount', sa.Numeric(precision=18, scale=2), nullable=True),
    sa.Column('direction', sa.String(length=10), nullable=True),
    sa.Column('channel', sa.String(length=20), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("direction IS NULL OR direction IN ('credit', 'debit')", name=op.f('ck_customer_event_direction')),
    sa.CheckConstraint("kind IN ('transaction', 'login', 'referral')", name=op.f('ck_customer_event_kind')),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_customer_event_customer_id_customer'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_event'))
    )
    op.create_index('uq_customer_event_customer_id_event_id', 'customer_event', ['customer_id', 'event_id'], unique=True)
    op.create_table('holding',
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('product_code', sa.String(length=40), nullable=False),
    sa.Column('opened_at', sa.Date(), nullable=True),
    sa.Column('balance', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_holding_customer_id_customer'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['product_code'], ['product.code'], name=op.f('fk_holding_product_code_product')),
    sa.PrimaryKeyConstraint('customer_id', 'product_code', name=op.f('pk_holding'))
    )
    op.create_table('holding_balance',
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('product_code', sa.String(length=40), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('balance', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_holding_balance_customer_id_customer'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('customer_id', 'product_code', 'as_of', name=op.f('pk_holding_balance'))
    )
    # ### end Alembic commands ###

    op.execute(CUSTOMER_FEATURES_VIEW)
    op.execute(CUSTOMER_FEATURES_FUNCTION)
    op.execute(CUSTOMER_FEATURES_RANGE_FUNCTION)

def downgrade() -> None:
    op.execute("DROP FUNCTION customer_features_between(bigint, bigint)")
    op.execute("DROP FUNCTION customer_features_for(bigint[])")
    op.execute("DROP VIEW customer_features")
    # ### commands auto generated by Alembic - please adjust! ###
    op.drop_table('holding_balance')
    op.drop_table('holding')
    op.drop_index('uq_customer_event_customer_id_event_id', table_name='customer_event')
    op.drop_table('customer_event')
    op.drop_table('customer_aum_daily')
    op.drop_table('customer_activity_daily')
    op.drop_table('product')
    op.drop_table('customer')
    op.drop_table('custom_attribute_definition')
    op.drop_table('api_key')
    # ### end Alembic commands ###
