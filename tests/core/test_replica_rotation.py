"""Which replica serves a read (app/core/replicas.py): round robin over those in rotation, only those that have
replayed the caller's consistency token, none (the primary) otherwise, each fallback counted by its reason. The
replicas here are what the background check leaves (tests/faults/test_replicas.py runs it on a real standby)."""

from prometheus_client import REGISTRY

from app.core.config import Settings
from app.core.replicas import Replica, ReplicaSet, format_lsn, parse_lsn, replica_name


def _fallbacks(reason: str) -> float:
    return REGISTRY.get_sample_value("tierwise_read_fallbacks_total", {"reason": reason}) or 0.0


def _set(*replicas: Replica) -> ReplicaSet:
    return ReplicaSet(list(replicas), Settings(), "postgresql://127.0.0.1/primary")


def test_lsn_text_round_trips_and_anything_else_is_none():
    assert parse_lsn("0/3000060") == 0x3000060
    assert parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert format_lsn(parse_lsn("16/B374D848")) == "16/B374D848"
    assert parse_lsn("16/b374d848") == parse_lsn("16/B374D848")
    for text in (None, "", "3000060", "0/", "/1", "0/123456789", "x/1", "0/1 extra", "-1/0"):
        assert parse_lsn(text) is None, text


def test_a_replica_is_named_without_its_credentials():
    assert replica_name("postgresql://reader:secret@replica-1.internal:5433/tierwise") == (
        "replica-1.internal:5433/tierwise"
    )


def test_reads_alternate_over_the_replicas_in_rotation():
    a, b, c = (Replica(name, f"postgresql://{name}/db") for name in ("rot-a:1/db", "rot-b:1/db", "rot-c:1/db"))
    replicas = _set(a, b, c)
    a.in_rotation = b.in_rotation = True  # c never passed a check
    chosen = [replicas.choose() for _ in range(4)]
    assert set(chosen) == {a, b} and chosen[0] is not chosen[1] and chosen[0] is chosen[2]


def test_a_token_goes_to_a_replica_that_has_replayed_it_else_to_the_primary():
    behind, ahead = Replica("tok-behind:1/db", "postgresql://x/db"), Replica("tok-ahead:1/db", "postgresql://y/db")
    replicas = _set(behind, ahead)
    behind.in_rotation = ahead.in_rotation = True
    behind.replay_lsn, ahead.replay_lsn = parse_lsn("0/2000000"), parse_lsn("0/3000060")
    assert {replicas.choose("0/3000060") for _ in range(3)} == {ahead}  # exactly at the token is enough
    before = _fallbacks("behind_token")
    assert replicas.choose("0/3000061") is None
    assert replicas.choose("not-a-token") is None  # never served stale for a token it cannot read
    assert _fallbacks("behind_token") == before + 2


def test_with_none_in_rotation_the_primary_serves_and_it_is_counted():
    down = Replica("none-down:1/db", "postgresql://z/db")
    replicas = _set(down)
    before = _fallbacks("none_in_rotation")
    assert replicas.choose() is None and replicas.choose("0/1") is None
    assert _fallbacks("none_in_rotation") == before + 2


def test_a_replica_that_failed_under_a_read_is_out_until_its_next_check():
    failing = Replica("fail-1:1/db", "postgresql://w/db")
    replicas = _set(failing)
    failing.in_rotation = True
    before = _fallbacks("replica_failed")
    replicas.failed(failing, ConnectionResetError(), out=True)
    assert not failing.in_rotation and "ConnectionResetError" in failing.error
    assert REGISTRY.get_sample_value("tierwise_read_replica_in_rotation", {"replica": "fail-1:1/db"}) == 0
    assert replicas.choose() is None
    assert _fallbacks("replica_failed") == before + 1


def test_replica_urls_are_read_comma_separated(monkeypatch):
    monkeypatch.setenv("TIERWISE_READ_DATABASE_URL", " postgresql://r1:5432/t , postgresql://r2:5432/t ,")
    assert Settings().read_database_url == ["postgresql://r1:5432/t", "postgresql://r2:5432/t"]
    monkeypatch.delenv("TIERWISE_READ_DATABASE_URL")
    assert Settings().read_database_url == []
