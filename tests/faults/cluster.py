"""A throwaway Postgres cluster the fault tests own: initdb and pg_ctl (the binaries the pgserver package ships)
on a free loopback port, so that a test may stop it, start it, terminate its backends or freeze it; and a streaming
replica of one (pg_basebackup, from the same binaries)."""

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
from pgserver._commands import POSTGRES_BIN_PATH

from bench.harness import free_port

SYSTEM_USER = "pgserver"  # Postgres refuses to run as root; pgserver runs it as this user too


class ThrowawayCluster:
    """One cluster in a temporary folder, listening on 127.0.0.1 only (no unix socket), fsync off."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="tierwise-faults-"))
        self.pgdata = self.folder / "data"
        self.port = free_port()
        self.user = self._system_user()

    def _system_user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        entry = ensure_user_exists(SYSTEM_USER)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
        ensure_prefix_permissions(self.folder)
        os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        return SYSTEM_USER

    def _run(self, program: str, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            [str(POSTGRES_BIN_PATH / program), *args],
            check=True,
            user=self.user,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.folder,
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> "ThrowawayCluster":
        self._run("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust", "--encoding=utf8", "--no-sync")
        return self.start()

    def start(self) -> "ThrowawayCluster":
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=120"
        )
        self._run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.folder / "log"), "-o", options, "-w", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop: `fast` ends every session (clients get "terminating connection due to administrator
        command") and refuses new ones; `immediate` quits at once, as after a crash."""
        self._run("pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        try:
            return self.postmaster().is_running()
        except (FileNotFoundError, psutil.NoSuchProcess):
            return False

    def postmaster(self) -> psutil.Process:
        return psutil.Process(int((self.pgdata / "postmaster.pid").read_text().split()[0]))

    def freeze(self) -> None:
        """A hung server: the postmaster and every backend stopped (SIGSTOP). The kernel still accepts TCP
        connections on the listening socket and takes every byte sent, but nothing ever answers."""
        postmaster = self.postmaster()
        for process in [postmaster, *postmaster.children(recursive=True)]:
            process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        postmaster = self.postmaster()
        for process in [postmaster, *postmaster.children(recursive=True)]:
            process.send_signal(signal.SIGCONT)

    def destroy(self) -> None:
        try:
            self.thaw()
            self.stop("immediate")
        except Exception:  # already stopped, or never started
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


class StandbyCluster(ThrowawayCluster):
    """A streaming replica of a ThrowawayCluster (its initdb's pg_hba.conf trusts replication from 127.0.0.1, and
    wal_level is replica by default): `pg_basebackup -R` from the primary over loopback, then a hot standby on a
    port of its own."""

    def __init__(self, primary: ThrowawayCluster) -> None:
        super().__init__()
        self.primary = primary

    def init(self) -> "StandbyCluster":
        self._run(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.primary.port),
            "-U",
            "postgres",
            "-D",
            str(self.pgdata),
            "-R",  # standby.signal and primary_conninfo: starts as a streaming standby
            "-X",
            "stream",
            "--no-sync",
            "-c",
            "fast",
        )
        return self.start()


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
