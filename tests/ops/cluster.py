"""Private PostgreSQL and MariaDB servers in temporary folders, for tests that stop and
start them."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.process.server_process import free_port


def _postgres_bin() -> Path:
    """TEST_POSTGRES_BIN, else the newest Debian-installed PostgreSQL's bin folder."""
    if os.environ.get("TEST_POSTGRES_BIN"):
        return Path(os.environ["TEST_POSTGRES_BIN"])
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=_version)
    return versions[-1].parent if versions else Path("/usr/lib/postgresql/15/bin")


def _version(initdb: Path) -> int:
    name = initdb.parent.parent.name
    return int(name) if name.isdigit() else 0


BIN = _postgres_bin()
# initdb and postgres refuse to run as root.
OWNER = "postgres"
MARIADB_OWNER = "mysql"


class PrivateCluster:
    """`with PrivateCluster() as cluster:` initdb, start; stop() and start() at will;
    removed on exit."""

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="users-pg-"))
        self.data = self.folder / "data"
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def __enter__(self) -> Self:
        if os.geteuid() == 0:
            owner = pwd.getpwnam(OWNER)
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        try:
            self._run(
                BIN / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
                "-E", "UTF8", "--no-sync",
            )  # fmt: skip
            self.start()
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._pg_ctl("stop", "-m", "immediate", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._pg_ctl("start", "-o", options, "-l", str(self.folder / "log"))

    def stop(self) -> None:
        """`pg_ctl stop -m fast`: sessions are ended, then the server goes away."""
        self._pg_ctl("stop", "-m", "fast")

    def log(self) -> str:
        path = self.folder / "log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        self._run(BIN / "pg_ctl", "-D", self.data, "-w", "-t", "30", *args, check=check)

    def _run(self, *command: str | Path, check: bool = True) -> None:
        prefix = ["runuser", "-u", OWNER, "--"] if os.geteuid() == 0 else []
        done = subprocess.run(
            [*prefix, *map(str, command)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{command[0]} exited {done.returncode}:\n{done.stdout}{done.stderr}{self.log()}"
            )


class PrivateReplica(PrivateCluster):
    """A streaming replica of `primary` (pg_basebackup -R) on a port of its own; stop(),
    start(), pause_replay() and resume_replay() at will; removed on exit."""

    def __init__(self, primary: PrivateCluster) -> None:
        super().__init__()
        self.primary = primary

    def url_of(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def __enter__(self) -> Self:
        if os.geteuid() == 0:
            owner = pwd.getpwnam(OWNER)
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        try:
            self._run(
                BIN / "pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary.port),
                "-U", "postgres", "-D", self.data, "-R", "-X", "stream", "-c", "fast",
            )  # fmt: skip
            self.start()
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        return self

    def sql(self, statement: str) -> str:
        done = subprocess.run(
            [BIN / "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-At",
             "-c", statement],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        return done.stdout.strip()


class PrivateMariaDB:
    """The same for MariaDB: `mariadb-install-db` into a temporary folder, `mariadbd` on a
    free port; stop() is SIGTERM (its normal shutdown), start() runs it again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="users-mariadb-"))
        self.data = self.folder / "data"
        self.url = f"mysql+aiomysql://root@127.0.0.1:{self.port}/users"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        if os.geteuid() == 0:
            owner = pwd.getpwnam(MARIADB_OWNER)
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        try:
            command = [
                "mariadb-install-db", "--no-defaults", f"--datadir={self.data}",
                f"--user={MARIADB_OWNER}", "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ]  # fmt: skip
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            self.start()
            created = subprocess.run(
                [
                    *("mysql", "--protocol=TCP", "-h", "127.0.0.1", "-P", str(self.port)),
                    *("-u", "root", "-e", "CREATE DATABASE users CHARACTER SET utf8mb4"),
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert created.returncode == 0, created.stderr
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def start(self) -> None:
        command = [
            "/usr/sbin/mariadbd", "--no-defaults", f"--datadir={self.data}",
            f"--port={self.port}", "--bind-address=127.0.0.1",
            f"--socket={self.folder / 'sock'}", f"--pid-file={self.folder / 'pid'}",
            f"--user={MARIADB_OWNER}", "--skip-log-bin", "--innodb-buffer-pool-size=16M",
            f"--log-error={self.folder / 'error.log'}",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not self._answers():
            assert self._process.poll() is None, self.log()
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.05)

    def stop(self) -> None:
        assert self._process is not None
        self._process.terminate()
        self._process.wait(60)

    def log(self) -> str:
        path = self.folder / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as probe:
                return bool(probe.recv(1))  # the server greets first
        except OSError:
            return False
