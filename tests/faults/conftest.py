"""Fault tests own their Postgres: one throwaway cluster for the session (started once); each module makes its
database and serves it with a live server of its own."""

import contextlib

import pytest

from tests.faults.cluster import ThrowawayCluster


@pytest.fixture(scope="session")
def cluster():
    cluster = ThrowawayCluster().init()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def fault(cluster):
    """The cluster, for a test that stops or freezes it: running and answering again afterwards."""
    yield cluster
    with contextlib.suppress(Exception):
        cluster.thaw()
    if not cluster.running():
        cluster.start()
