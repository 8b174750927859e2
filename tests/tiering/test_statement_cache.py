"""The tiering statements are cached by SQLAlchemy once compiled: the re-tiering worker and every synchronous write
run them on the event loop that also serves requests, and compiling one anew took 13-34 ms (bench/RESULTS.md,
import20f)."""

from sqlalchemy.dialects import postgresql

from app.rules.attributes import load_catalog
from app.tiering.assignment.compile import active_versions, compile_version
from app.tiering.policies import load_default_policies


async def test_every_scope_of_every_default_policy_has_a_cache_key(session):
    await load_default_policies(session, "test")
    pairs = await active_versions(session, None)
    catalog = await load_catalog(session)
    assert len(pairs) >= 4
    dialect = postgresql.asyncpg.dialect()
    for scope in ("ids", "range", "staged"):
        for policy, version in pairs:
            statement = compile_version(policy, version, catalog, scope).statement
            assert statement._generate_cache_key() is not None, (policy.key, scope)
            cache: dict = {}
            for hit in ("CACHE_MISS", "CACHE_HIT"):
                *_, outcome = statement._compile_w_cache(dialect, compiled_cache=cache, column_keys=[])
                assert outcome.name == hit, (policy.key, scope)
