"""The customer_features SELECT, rendered from one definition: the view customer_features (every live customer) and
the functions customer_features_for(ids) and customer_features_between(id_from, id_to), the same SELECT with the
customers' filter pushed into every aggregate, so that one customer or one chunk never aggregates the population.

Time-relative metrics are computed against now(), so they stay correct as days pass; sums come from rollups
maintained on write. Each version a migration created is kept here, frozen (tests/rules/test_features_sql.py holds
each to a digest of its SQL): a change is a new version, `previous.then(...)`, made CURRENT, and a migration whose
upgrade calls `replace_features(op.execute, new)` and whose downgrade calls it with the previous version
(app/rules/attributes.py says how a built-in attribute is added).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Customers' filters, by the column a source filters on: none (the view), some ids, a range of ids.
EVERYONE: Callable[[str], str] = lambda column: ""  # noqa: E731
BY_IDS: Callable[[str], str] = lambda column: f"AND {column} = ANY(ids)"  # noqa: E731
BY_RANGE: Callable[[str], str] = lambda column: f"AND {column} BETWEEN id_from AND id_to"  # noqa: E731


HOLDINGS, ACTIVITY = "holdings", "activity"
"""The writes that move some columns and no others (customers.flows re-tiers only the policies reading them)."""


@dataclass(frozen=True)
class Column:
    """One column of the select list: its name, its SQL as written (expression and alias) and, for a column only
    one kind of write can move, that write (HOLDINGS or ACTIVITY; None: a profile or feedback write, or time)."""

    name: str
    sql: str
    moved_by: str | None = None


@dataclass(frozen=True)
class Source:
    """A LEFT JOIN of per-customer aggregates: SQL with `{filter}` where the customers' filter on `filtered` goes
    (None: a join on the customer's key, which needs none)."""

    sql: str
    filtered: str | None = None


@dataclass(frozen=True)
class FeaturesVersion:
    columns: tuple[Column, ...]
    sources: tuple[Source, ...]

    def then(self, columns: Sequence[Column] = (), sources: Sequence[Source] = ()) -> "FeaturesVersion":
        """The next version: more columns (at the end, as CREATE OR REPLACE VIEW requires) and sources."""
        return FeaturesVersion(self.columns + tuple(columns), self.sources + tuple(sources))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    def moved_by(self, write: str) -> frozenset[str]:
        """The columns a write of this kind (HOLDINGS or ACTIVITY) can move."""
        return frozenset(column.name for column in self.columns if column.moved_by == write)

    def select(self, customers: Callable[[str], str] = EVERYONE) -> str:
        """The SELECT, its customers filtered by `customers` (EVERYONE, BY_IDS or BY_RANGE)."""
        joins = "".join(
            "\n" + source.sql.format(filter=customers(source.filtered) if source.filtered else "")
            for source in self.sources
        )
        return (
            "\nSELECT\n    "
            + ",\n    ".join(column.sql for column in self.columns)
            + "\nFROM customer c"
            + joins
            + f"\nWHERE c.erased_at IS NULL {customers('c.id')}\n"
        )

    def statements(self, view: str = "CREATE OR REPLACE VIEW") -> list[str]:
        """The view, then the two functions (whose row type is the view's)."""
        return [
            f"{view} customer_features AS" + self.select(),
            "CREATE FUNCTION customer_features_for(ids bigint[]) RETURNS SETOF customer_features "
            "LANGUAGE sql STABLE PARALLEL SAFE AS $features$" + self.select(BY_IDS) + "$features$",
            "CREATE FUNCTION customer_features_between(id_from bigint, id_to bigint) RETURNS SETOF "
            "customer_features LANGUAGE sql STABLE PARALLEL SAFE AS $features$" + self.select(BY_RANGE) + "$features$",
        ]


DROP_FUNCTIONS = [
    "DROP FUNCTION customer_features_between(bigint, bigint)",
    "DROP FUNCTION customer_features_for(bigint[])",
]


def replace_features(
    execute: Callable[[str], object], version: FeaturesVersion, *, fewer_columns: bool = False
) -> None:
    """Make `version` the database's (`execute`: a migration's op.execute). The functions' row type is the view's,
    so they are dropped first; with `fewer_columns` (a downgrade) the view too, as it cannot lose columns."""
    for statement in DROP_FUNCTIONS + (["DROP VIEW customer_features"] if fewer_columns else []):
        execute(statement)
    for statement in version.statements("CREATE VIEW" if fewer_columns else "CREATE OR REPLACE VIEW"):
        execute(statement)


# ---- the versions (frozen once a migration has shipped them) -----------------------------------------------------

FEATURES_V1 = FeaturesVersion(  # migrations/versions/2026-11-23_initial_schema.py
    columns=(
        Column("customer_id", "c.id AS customer_id"),
        Column("external_id", "c.external_id"),
        Column("segment", "c.segment"),
        Column("risk_level", "c.risk_level"),
        Column(
            "risk_tolerance",
            """CASE WHEN c.risk_assessed_at >= now() - make_interval(
              days => coalesce(nullif(current_setting('tierwise.risk_valid_days', true), '')::int, 365))
         THEN c.risk_level END AS risk_tolerance""",
        ),
        Column("marketing_consent", "c.marketing_consent"),
        Column("attributes", "c.attributes"),
        Column("birth_date", "c.birth_date"),
        Column("onboarded_at", "c.onboarded_at"),
        Column("age", "date_part('year', age(current_date, c.birth_date))::int AS age"),
        Column(
            "tenure_months",
            "(date_part('year', age(now(), c.onboarded_at)) * 12 "
            "+ date_part('month', age(now(), c.onboarded_at)))::int\n        AS tenure_months",
        ),
        Column("aum", "coalesce(h.aum, 0) AS aum", HOLDINGS),
        Column("aum_avg_3m", "coalesce(avg3.aum_avg_3m, h.aum, 0) AS aum_avg_3m", HOLDINGS),
        Column(
            "aum_trend_3m",
            "round(coalesce(h.aum, 0) / nullif(coalesce(avg3.aum_avg_3m, h.aum), 0) - 1, 4) AS aum_trend_3m",
            HOLDINGS,
        ),
        Column("deposit_balance", "coalesce(h.deposit_balance, 0) AS deposit_balance", HOLDINGS),
        Column("investment_balance", "coalesce(h.investment_balance, 0) AS investment_balance", HOLDINGS),
        Column("loan_balance", "coalesce(h.loan_balance, 0) AS loan_balance", HOLDINGS),
        Column("products_held_count", "coalesce(h.products_held_count, 0) AS products_held_count", HOLDINGS),
        Column("held_products", "coalesce(h.held_products, '{}') AS held_products", HOLDINGS),
        Column("held_categories", "coalesce(h.held_categories, '{}') AS held_categories", HOLDINGS),
        Column("txn_count_90d", "coalesce(a.txn_count_90d, 0) AS txn_count_90d", ACTIVITY),
        Column("txn_amount_90d", "coalesce(a.txn_amount_90d, 0) AS txn_amount_90d", ACTIVITY),
        Column(
            "days_since_last_txn",
            "(current_date - (c.last_txn_at AT TIME ZONE 'UTC')::date) AS days_since_last_txn",
            ACTIVITY,
        ),
        Column("logins_30d", "coalesce(a.logins_30d, 0) AS logins_30d", ACTIVITY),
        Column("referrals_12m", "coalesce(a.referrals_12m, 0) AS referrals_12m", ACTIVITY),
    ),
    sources=(
        Source(
            """LEFT JOIN (
    SELECT hd.customer_id,
           sum(hd.balance) FILTER (WHERE p.category IN ('deposit', 'wealth', 'fund', 'insurance')) AS aum,
           sum(hd.balance) FILTER (WHERE p.category = 'deposit') AS deposit_balance,
           sum(hd.balance) FILTER (WHERE p.category IN ('wealth', 'fund')) AS investment_balance,
           sum(hd.balance) FILTER (WHERE p.category IN ('loan', 'card')) AS loan_balance,
           count(*)::int AS products_held_count,
           array_agg(hd.product_code::text ORDER BY hd.product_code) AS held_products,
           array_agg(DISTINCT p.category::text) AS held_categories
    FROM holding hd JOIN product p ON p.code = hd.product_code
    WHERE true {filter}
    GROUP BY hd.customer_id
) h ON h.customer_id = c.id""",
            "hd.customer_id",
        ),
        Source(
            """LEFT JOIN (
    -- time-weighted daily average over the trailing three months (91 days) of a step function of reported AUM
    SELECT s.customer_id,
           round(sum(s.aum * (least(coalesce(s.next_day, current_date + 1), current_date + 1)
                              - greatest(s.day, (current_date - 91))))
                 / nullif(sum(least(coalesce(s.next_day, current_date + 1), current_date + 1)
                              - greatest(s.day, (current_date - 91))), 0), 2) AS aum_avg_3m
    FROM (
        SELECT d.customer_id, d.day, d.aum, lead(d.day) OVER (PARTITION BY d.customer_id ORDER BY d.day) AS next_day
        FROM customer_aum_daily d
        WHERE d.day > (current_date - 456) AND d.day <= current_date {filter}
    ) s
    WHERE coalesce(s.next_day, current_date + 1) > (current_date - 91)
    GROUP BY s.customer_id
) avg3 ON avg3.customer_id = c.id""",
            "d.customer_id",
        ),
        Source(
            """LEFT JOIN (
    SELECT ad.customer_id,
           sum(ad.txn_count) FILTER (WHERE ad.day > current_date - 90)::int AS txn_count_90d,
           sum(ad.txn_amount) FILTER (WHERE ad.day > current_date - 90) AS txn_amount_90d,
           sum(ad.logins) FILTER (WHERE ad.day > current_date - 30)::int AS logins_30d,
           sum(ad.referrals)::int AS referrals_12m
    FROM customer_activity_daily ad
    WHERE ad.day > (current_date - 365) AND ad.day <= current_date {filter}
    GROUP BY ad.customer_id
) a ON a.customer_id = c.id""",
            "ad.customer_id",
        ),
    ),
)

FEATURES_V2 = FEATURES_V1.then(  # migrations/versions/2026-11-23_surveys_complaints_satisfaction.py
    columns=(
        Column("nps_latest", "s.nps_latest::int AS nps_latest"),
        Column("is_promoter", "coalesce(s.nps_latest >= 9, false) AS is_promoter"),
        Column("is_detractor", "coalesce(s.nps_latest <= 6, false) AS is_detractor"),
        Column("csat_avg", "round(s.csat_sum::numeric / nullif(s.csat_count, 0), 2) AS csat_avg"),
        Column("open_complaints", "coalesce(s.open_complaints, 0) AS open_complaints"),
        Column(
            "days_to_resolve_avg", "round(s.resolve_days_sum / nullif(s.resolved_count, 0), 2) AS days_to_resolve_avg"
        ),
    ),
    sources=(Source("LEFT JOIN customer_satisfaction s ON s.customer_id = c.id"),),
)

FEATURES_V3 = FEATURES_V2.then(  # migrations/versions/2026-12-06_benefits.py
    columns=(
        Column(
            "birthday_month",
            "coalesce(date_part('month', c.birth_date) = date_part('month', current_date), false) AS birthday_month",
        ),
    ),
)

FEATURES_V4 = FEATURES_V3.then(  # migrations/versions/2026-12-06_engagement.py
    columns=(
        Column("communities_joined", "coalesce(cm.communities_joined, 0) AS communities_joined"),
        Column("community_active_30d", "coalesce(ca.community_active, false) AS community_active_30d"),
        Column("activities_attended_12m", "coalesce(ap.activities_attended, 0) AS activities_attended_12m"),
        Column("referrals_converted_12m", "coalesce(rf.referrals_converted, 0) AS referrals_converted_12m"),
        Column(
            "advocacy_score",
            "(3 * coalesce(rf.referrals_converted, 0) + coalesce(ap.activities_attended, 0) "
            "+ coalesce(cm.communities_joined, 0)\n"
            "         + CASE WHEN coalesce(ca.community_active, false) THEN 2 ELSE 0 END) AS advocacy_score",
        ),
    ),
    sources=(
        Source(
            """LEFT JOIN (
    SELECT m.customer_id, count(*)::int AS communities_joined
    FROM community_membership m
    WHERE m.state = 'joined' {filter}
    GROUP BY m.customer_id
) cm ON cm.customer_id = c.id""",
            "m.customer_id",
        ),
        Source(
            """LEFT JOIN (
    SELECT ce.customer_id, true AS community_active
    FROM community_activity_event ce
    WHERE ce.occurred_at >= (current_date - 29) {filter}
    GROUP BY ce.customer_id
) ca ON ca.customer_id = c.id""",
            "ce.customer_id",
        ),
        Source(
            """LEFT JOIN (
    SELECT ap.customer_id, count(*)::int AS activities_attended
    FROM activity_participation ap
    WHERE ap.state = 'attended' AND ap.attended_at >= (current_date - 364) {filter}
    GROUP BY ap.customer_id
) ap ON ap.customer_id = c.id""",
            "ap.customer_id",
        ),
        Source(
            """LEFT JOIN (
    SELECT rr.referrer_id, count(*)::int AS referrals_converted
    FROM referral rr
    WHERE rr.status = 'active' AND rr.activated_at >= (current_date - 364) {filter}
    GROUP BY rr.referrer_id
) rf ON rf.referrer_id = c.id""",
            "rr.referrer_id",
        ),
    ),
)

# The churn model's features, in the order of its coefficients (app/reports/churn.py computes the same at month-ends
# to fit it): assets (log), their trend over three months (clipped to -1..1), products held, logins in 30 days and
# transactions in 90 days (logs).
CHURN_TREND_SQL = (
    "least(greatest(coalesce(coalesce(h.aum, 0) / nullif(coalesce(avg3.aum_avg_3m, h.aum), 0) - 1, 0), -1), 1)"
)

FEATURES_V5 = FEATURES_V4.then(  # migrations/versions/2026-12-06_contribution_and_churn.py
    columns=(
        Column(
            "contribution_monthly",
            """CASE WHEN jsonb_typeof(c.attributes -> 'bank_contribution_monthly') = 'number'
         THEN round((c.attributes ->> 'bank_contribution_monthly')::numeric, 2)
         ELSE coalesce(ct.contribution_monthly, 0) END AS contribution_monthly""",
        ),
        Column(
            "churn_risk",
            f"""CASE WHEN churn.intercept IS NOT NULL THEN round((1 / (1 + exp(-least(greatest(churn.intercept
            + churn.coefficients[1] * ln(1 + greatest(coalesce(h.aum, 0), 0))
            + churn.coefficients[2] * {CHURN_TREND_SQL}
            + churn.coefficients[3] * coalesce(h.products_held_count, 0)
            + churn.coefficients[4] * ln(1 + coalesce(a.logins_30d, 0))
            + churn.coefficients[5] * ln(1 + coalesce(a.txn_count_90d, 0)), -30), 30))))::numeric, 4) END
        AS churn_risk""",
        ),
    ),
    sources=(
        Source(
            """LEFT JOIN (
    SELECT hm.customer_id,
           round(sum(abs(hm.balance) * mg.margin_rate / 12 + mg.monthly_fee), 2) AS contribution_monthly
    FROM holding hm JOIN contribution_margin mg ON mg.product_code = hm.product_code
    WHERE true {filter}
    GROUP BY hm.customer_id
) ct ON ct.customer_id = c.id""",
            "hm.customer_id",
        ),
        Source(
            "LEFT JOIN (SELECT intercept, coefficients FROM churn_model ORDER BY version DESC LIMIT 1) churn ON true"
        ),
    ),
)

CURRENT = FEATURES_V5
"""The version the head migration creates."""
