"""deploy/grafana/users-v1.json: every query of every panel returns data from a real
Prometheus scraping a real server under a short load."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import grpc
from users.v1 import user_service_pb2

from tests.ops.prometheus import JOB, Prometheus, running_prometheus
from tests.process.server_process import ServerProcess, free_port, sqlite_url
from tests.rpc import UserStub, create_user, fails

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "users-v1.json"
# What Grafana puts in for its variables: the job, and a rate window of a few scrapes.
VARIABLES = {"$job": JOB, "$__rate_interval": "5s"}
LOAD_SECONDS = 4.0
DATA_TIMEOUT_SECONDS = 20.0


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL with the dashboard's variables filled in), every target."""
    queries = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets") or ():
            expr = target["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            queries.append((panel["title"], expr))
    return queries


async def load(target: str, seconds: float) -> None:
    """Creates, reads, a failing read and a stream, over and over: every method the
    panels draw gets calls, some of them errors."""
    async with grpc.aio.insecure_channel(target) as channel:
        users = UserStub(channel)
        first = await create_user(users)
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            await create_user(users)
            await users.GetUser(user_service_pb2.GetUserRequest(id=first.id))
            await fails(users.GetUser(user_service_pb2.GetUserRequest(id=10**12)))
            stream = users.StreamUsers(user_service_pb2.StreamUsersRequest(batch_size=10))
            async for _ in stream:
                pass


def without_data(prometheus: Prometheus, queries: list[tuple[str, str]]) -> list[str]:
    return [f"{title}: {expr}" for title, expr in queries if not prometheus.query(expr)]


async def test_every_panel_of_the_dashboard_shows_data(tmp_path: Path) -> None:
    queries = panel_queries()
    assert len(queries) >= 10
    port, metrics_port = free_port(), free_port()
    args = [
        *("--port", str(port), "--database-url", sqlite_url(tmp_path / "users.db")),
        *("--metrics-port", str(metrics_port), "--host", "127.0.0.1"),
    ]
    with (
        ServerProcess(tmp_path, args, port=port) as process,
        running_prometheus(tmp_path, [f"127.0.0.1:{metrics_port}"]) as prometheus,
    ):
        await load(process.target, LOAD_SECONDS)
        deadline = time.monotonic() + DATA_TIMEOUT_SECONDS
        while missing := await asyncio.to_thread(without_data, prometheus, queries):
            assert time.monotonic() < deadline, f"panels without data: {missing}"
            await asyncio.sleep(0.5)
        # The rule files load in a real server and evaluate without an error.
        groups = await asyncio.to_thread(prometheus.rule_groups)
        rules = [rule for group in groups for rule in group["rules"]]
        assert len(rules) == 12
        assert all(rule["health"] != "err" for rule in rules), rules
        assert process.terminate(10) == 0, process.stderr
