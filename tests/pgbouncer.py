"""A PgBouncer in transaction mode in front of the test PostgreSQL (API.md,
--database-pooler pgbouncer): started once per test session on a free port.

scripts/test-databases.sh installs the program (Debian's pgbouncer). It refuses to run as
root, so as root it runs as postgres, with its files in a folder postgres owns.
"""

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

from sqlalchemy.engine import make_url

from tests.process.server_process import free_port

START_SECONDS = 10.0
OWNER = "postgres"


class PgBouncer:
    def __init__(self, postgres_url: str) -> None:
        self._upstream = make_url(postgres_url)
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="users-pgbouncer-"))
        self._process: subprocess.Popen[bytes] | None = None

    def url_for(self, direct_url: str) -> str:
        """The same database, through this PgBouncer."""
        return (
            make_url(direct_url)
            .set(host="127.0.0.1", port=self.port)
            .render_as_string(hide_password=False)
        )

    def __enter__(self) -> Self:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        config = self.folder / "pgbouncer.ini"
        users = self.folder / "users.txt"
        upstream = f"host={self._upstream.host or '127.0.0.1'} port={self._upstream.port or 5432}"
        config.write_text(
            "[databases]\n"
            f"* = {upstream}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            "pool_mode = transaction\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            "max_client_conn = 1000\n"
            "default_pool_size = 10\n"
        )
        users.write_text(f'"{self._upstream.username or "postgres"}" ""\n')
        command = [binary, str(config)]
        if os.geteuid() == 0:
            owner = pwd.getpwnam(OWNER)
            for path in (self.folder, config, users):
                os.chown(path, owner.pw_uid, owner.pw_gid)
            command = ["su", OWNER, "-s", "/bin/sh", "-c", " ".join(command)]
        log = (self.folder / "pgbouncer.log").open("wb")
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + START_SECONDS
        while not self._accepts():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"PgBouncer did not start:\n{self.log()}")
            time.sleep(0.05)
        return self

    def log(self) -> str:
        path = self.folder / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None and self._process.poll() is None:
            # su passes the signal on to pgbouncer, which exits at once on SIGINT... SIGTERM
            # waits for clients; the test's servers are gone by now either way.
            subprocess.run(["pkill", "-INT", "-f", f"pgbouncer {self.folder}"], check=False)
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
