"""`import` and `export` under a real terminal (tmux): the progress bar is drawn on stderr
(rows, rows/s, elapsed; a total and an ETA for a file import), and the data stays clean.
Everywhere else (tests/client/test_commands.py) stderr is a pipe and gets one plain line."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.process.server_process import ServerProcess, free_port, service_command, sqlite_url

ROWS = 2000
WAIT_SECONDS = 60.0


@contextmanager
def tmux_server() -> Iterator[str]:
    """A tmux server of our own (its own socket), killed after."""
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.fail("tmux is not installed: scripts/test-databases.sh (make dbs) installs it")
    socket = f"users-test-{uuid.uuid4().hex[:8]}"
    try:
        yield socket
    finally:
        subprocess.run([tmux, "-L", socket, "kill-server"], check=False, capture_output=True)


def in_terminal(socket: str, workdir: Path, command: list[str]) -> str:
    """Runs `command` in a 150x12 tmux pane; the pane's text once it exited 0."""
    done = workdir / f"exit-{uuid.uuid4().hex[:6]}"
    shell = f"{shlex.join(command)}; echo $? > {shlex.quote(str(done))}; sleep 600"
    name = uuid.uuid4().hex[:6]
    subprocess.run(
        ["tmux", "-L", socket, "-f", "/dev/null", "new-session", "-d", "-s", name,
         "-x", "150", "-y", "12", "-c", str(workdir), shell],
        check=True,
    )  # fmt: skip
    deadline = time.monotonic() + WAIT_SECONDS
    while not done.exists() or not done.read_text().strip():
        assert time.monotonic() < deadline, f"{command} did not finish in {WAIT_SECONDS} s"
        time.sleep(0.1)
    pane = subprocess.run(
        ["tmux", "-L", socket, "capture-pane", "-p", "-t", name],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert done.read_text().strip() == "0", pane
    return pane


def test_import_and_export_draw_a_progress_bar_in_a_terminal(tmp_path: Path) -> None:
    port = free_port()
    target = f"127.0.0.1:{port}"
    rows = "".join(f'{{"name": "T{i}", "email": "t{i}@tty.example"}}\n' for i in range(ROWS))
    (tmp_path / "in.jsonl").write_text(rows)
    args = ("--port", str(port), "--database-url", sqlite_url(tmp_path / "tty.db"))
    with ServerProcess(tmp_path, args, port=port), tmux_server() as socket:
        pane = in_terminal(
            socket,
            tmp_path,
            service_command("import", "in.jsonl", "--target", target),
        )
        bar = next(line for line in pane.splitlines() if line.startswith("import "))
        # a bar, the count against the file's total, rows/s, elapsed and remaining
        assert "━" in bar, pane
        assert f"{ROWS:,}/{ROWS:,} rows" in bar, pane
        assert "rows/s" in bar and "0:00:" in bar, pane
        assert f"imported {ROWS:,} users in " in pane

        pane = in_terminal(
            socket,
            tmp_path,
            service_command("export", "--target", target, "-o", "out.jsonl"),
        )
        bar = next(line for line in pane.splitlines() if line.startswith("export "))
        assert f"{ROWS:,} rows" in bar and "rows/s" in bar and "0:00:" in bar, pane
        assert f"exported {ROWS:,} users in " in pane
        exported = (tmp_path / "out.jsonl").read_text().splitlines()
        assert len(exported) == ROWS and "\x1b" not in exported[-1]
