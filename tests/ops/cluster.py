"""A private PostgreSQL cluster in a temporary folder, for tests that stop and start it."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.process.server_process import free_port

BIN = Path(os.environ.get("TEST_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
# initdb and postgres refuse to run as root.
OWNER = "postgres"


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
