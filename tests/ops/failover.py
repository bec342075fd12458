"""A PostgreSQL pair under Patroni (a leader and a synchronous standby), etcd as its
consensus store and HAProxy in front sending connections to whichever node Patroni calls
primary: the set-up of ../shared/MACHINE.md, in a temporary folder on free ports.

`with FailoverCluster() as cluster:` starts everything and waits for a leader and a sync
standby; `kill_leader()` SIGKILLs the leader's Patroni and postmaster, as a crashed
machine would; everything is stopped and removed on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from tests.ops.cluster import BIN
from tests.process.server_process import free_port

OWNER = "postgres"
SUPERUSER_PASSWORD = "pg"
READY_SECONDS = 90.0


class Node:
    def __init__(self, folder: Path, name: str) -> None:
        self.name = name
        self.rest_port = free_port()
        self.pg_port = free_port()
        self.data = folder / name
        self.config = folder / f"{name}.yml"
        self.process: subprocess.Popen[bytes] | None = None

    def rest(self, path: str) -> tuple[int, dict[str, object]]:
        """Patroni's REST answer: status and JSON body (0 when it does not answer)."""
        url = f"http://127.0.0.1:{self.rest_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, {}
        except (OSError, ValueError):
            return 0, {}

    def is_primary(self) -> bool:
        return self.rest("/primary")[0] == 200

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


class FailoverCluster:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="users-patroni-"))
        self.etcd_port, self.etcd_peer_port = free_port(), free_port()
        self.haproxy_port = free_port()
        self.nodes = [Node(self.folder, "n1"), Node(self.folder, "n2")]
        self._others: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    @property
    def url(self) -> str:
        """The service's URL: through HAProxy, to whichever node is primary."""
        return (
            f"postgresql+asyncpg://postgres:{SUPERUSER_PASSWORD}@127.0.0.1:"
            f"{self.haproxy_port}/postgres"
        )

    @property
    def multihost_url(self) -> str:
        """The service's URL without HAProxy: both nodes, the driver picks the writable."""
        hosts = "&".join(f"host=127.0.0.1:{node.pg_port}" for node in self.nodes)
        return (
            f"postgresql+asyncpg://postgres:{SUPERUSER_PASSWORD}@/postgres?{hosts}"
            "&target_session_attrs=read-write"
        )

    def __enter__(self) -> Self:
        if os.geteuid() == 0:
            owner = pwd.getpwnam(OWNER)
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        try:
            self._start_etcd()
            for node in self.nodes:
                self._start_node(node)
            self._start_haproxy()
            self.wait_for_pair()
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
        for node in self.nodes:
            self._kill_node(node)
        for process in self._others:
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in self._logs:
            log.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def leader(self) -> Node | None:
        return next((node for node in self.nodes if node.is_primary()), None)

    def wait_for_pair(self, timeout: float = READY_SECONDS) -> Node:
        """Waits for a leader and a synchronous standby; the leader."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            standby = [n for n in self.nodes if n is not leader and n.rest("/sync")[0] == 200]
            if leader is not None and standby:
                return leader
            time.sleep(0.5)
        raise AssertionError(f"no leader and sync standby within {timeout} s:\n{self.logs()}")

    def wait_for_leader(self, timeout: float = READY_SECONDS) -> Node:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None:
                return leader
            time.sleep(0.1)
        raise AssertionError(f"no leader within {timeout} s:\n{self.logs()}")

    def kill_leader(self) -> Node:
        """SIGKILL of the leader's Patroni and then its postmaster."""
        leader = self.leader()
        assert leader is not None, "no leader to kill"
        self._kill_node(leader)
        return leader

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.folder.glob("*.log"))
        )

    def _kill_node(self, node: Node) -> None:
        # su starts patroni in a session of its own: found by its config file's path.
        subprocess.run(["pkill", "-KILL", "-f", str(node.config)], check=False)
        if node.process is not None:
            node.process.wait()
        pid = node.postmaster_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _spawn(self, name: str, command: list[str], *, as_owner: bool) -> subprocess.Popen[bytes]:
        log = (self.folder / f"{name}.log").open("wb")
        self._logs.append(log)
        if as_owner and os.geteuid() == 0:
            command = ["su", OWNER, "-s", "/bin/sh", "-c", " ".join(command)]
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        client = f"http://127.0.0.1:{self.etcd_port}"
        command = [
            "etcd", "--name", "n", "--data-dir", str(self.folder / "etcd"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"n={peer}",
        ]  # fmt: skip
        self._others.append(self._spawn("etcd", command, as_owner=False))

    def _start_node(self, node: Node) -> None:
        folder = self.folder
        node.config.write_text(
            f"""scope: users-{folder.name}
name: {node.name}
restapi: {{listen: 127.0.0.1:{node.rest_port}, connect_address: 127.0.0.1:{node.rest_port}}}
etcd3: {{hosts: 127.0.0.1:{self.etcd_port}}}
bootstrap:
  dcs: {{ttl: 10, loop_wait: 2, retry_timeout: 5, synchronous_mode: true,
        postgresql: {{use_pg_rewind: true}}}}
  initdb: [{{encoding: UTF8}}]
  pg_hba: [host replication replicator 127.0.0.1/32 trust, host all all 127.0.0.1/32 trust]
postgresql:
  listen: 127.0.0.1:{node.pg_port}
  connect_address: 127.0.0.1:{node.pg_port}
  data_dir: {node.data}
  bin_dir: {BIN}
  pgpass: {folder / f"pgpass-{node.name}"}
  authentication: {{replication: {{username: replicator, password: rep}},
                   superuser: {{username: postgres, password: {SUPERUSER_PASSWORD}}}}}
  parameters: {{unix_socket_directories: {folder}, fsync: 'off'}}
"""
        )
        if os.geteuid() == 0:
            owner = pwd.getpwnam(OWNER)
            os.chown(node.config, owner.pw_uid, owner.pw_gid)
        node.process = self._spawn(
            f"patroni-{node.name}", ["patroni", str(node.config)], as_owner=True
        )
        if node is self.nodes[0]:
            # The first node bootstraps the cluster; the second then joins as its standby.
            self.wait_for_leader()

    def _start_haproxy(self) -> None:
        config = self.folder / "haproxy.cfg"
        servers = "\n".join(
            f"    server {n.name} 127.0.0.1:{n.pg_port} check port {n.rest_port}"
            for n in self.nodes
        )
        config.write_text(
            f"""global
    maxconn 1000
defaults
    mode tcp
    timeout connect 2s
    timeout client 30m
    timeout server 30m
    timeout check 1s
listen primary
    bind 127.0.0.1:{self.haproxy_port}
    option httpchk GET /primary
    http-check expect status 200
    default-server inter 1s fall 2 rise 2 on-marked-down shutdown-sessions
{servers}
"""
        )
        self._others.append(
            self._spawn("haproxy", ["haproxy", "-f", str(config), "-db"], as_owner=False)
        )
