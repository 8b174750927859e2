"""`tierwise serve` on the embedded Postgres (no TIERWISE_DATABASE_URL) stops that Postgres on every way out:
SIGTERM (docker, systemd, Kubernetes), Ctrl-C (SIGINT), and a failure at start-up; also after an earlier process
was killed without cleaning up, whose registration would otherwise keep the server alive forever."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from bench.harness import free_port

ROOT = Path(__file__).resolve().parents[2]


def _postgres_of(pgdata: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] == "postgres" and any(str(pgdata) in part for part in process.info["cmdline"] or []):
            found.append(process)
    return found


def _serve(data_dir: Path, port: int, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "TIERWISE_DATABASE_URL"}
    env.update(
        TIERWISE_DATA_DIR=str(data_dir),
        TIERWISE_PORT=str(port),
        TIERWISE_LOG_LEVEL="WARNING",
        TIERWISE_STATS_REFRESH_MINUTES="0",
        TIERWISE_OFFER_STATES_REFRESH_MINUTES="0",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_until_serving(server: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the server exited: {server.stderr.read().decode()[-2000:]}"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not start")


def _stop(server: subprocess.Popen, sig: int) -> int:
    server.send_signal(sig)
    try:
        return server.wait(60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


@pytest.fixture
def data_dir(tmp_path):
    yield tmp_path
    for process in _postgres_of(tmp_path.resolve() / "pgdata"):  # only if a test failed: leave nothing behind
        process.kill()


def test_sigterm_then_ctrl_c_each_stop_the_embedded_postgres(data_dir):
    pgdata = data_dir.resolve() / "pgdata"
    port = free_port()
    server = _serve(data_dir, port)
    _wait_until_serving(server, port)
    assert _postgres_of(pgdata), "the embedded postgres should run while serving"
    assert _stop(server, signal.SIGTERM) == -signal.SIGTERM  # ended by the signal, as supervisors expect
    assert _postgres_of(pgdata) == []
    assert json.loads((pgdata / ".handle_pids.json").read_text()) == []

    # An earlier process killed outright (SIGKILL) stays registered; it must not keep the server alive.
    (pgdata / ".handle_pids.json").write_text(json.dumps([_a_pid_that_has_exited()]))
    server = _serve(data_dir, port)
    _wait_until_serving(server, port)
    assert _postgres_of(pgdata)
    _stop(server, signal.SIGINT)
    assert _postgres_of(pgdata) == []


def test_two_workers_share_the_one_embedded_postgres_the_serve_process_started(data_dir):
    """`serve --workers 2`: one Postgres, registered by the serve process alone (the workers are given its URL and
    start none), both workers answering with one scheduler leader between them; SIGTERM stops it all."""
    pgdata = data_dir.resolve() / "pgdata"
    port = free_port()
    server = _serve(data_dir, port, "--workers", "2")
    try:
        _wait_until_serving(server, port)
        assert len(_postgres_of(pgdata)) == 1  # one postmaster (backends' titles do not name the data folder)
        assert json.loads((pgdata / ".handle_pids.json").read_text()) == [server.pid]
        deadline, metrics = time.monotonic() + 60, ""
        while time.monotonic() < deadline:
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            if 'tierwise_db_pool_size{pool="engine"} 64.0' in metrics and "tierwise_scheduler_leader 1.0" in metrics:
                break  # both workers' pools of 32, one leader
            time.sleep(0.3)
        assert 'tierwise_db_pool_size{pool="engine"} 64.0' in metrics and "tierwise_scheduler_leader 1.0" in metrics
    finally:
        _stop(server, signal.SIGTERM)
    assert _postgres_of(pgdata) == []


def test_a_failure_at_start_up_stops_the_embedded_postgres(data_dir):
    pgdata = data_dir.resolve() / "pgdata"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = _serve(data_dir, taken.getsockname()[1])
        assert server.wait(90) != 0
    assert (pgdata / "PG_VERSION").exists(), "the embedded postgres was started before serving failed"
    assert _postgres_of(pgdata) == []


def _a_pid_that_has_exited() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid
