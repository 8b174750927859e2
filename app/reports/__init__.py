"""Reports: single SQL aggregations over indexed tables (tiers, migrations, funnel, satisfaction)."""
