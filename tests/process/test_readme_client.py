"""README.md, "Python client" and "Export and import": their examples, run in order against
a server on a new database, and what they print.

What the README promises this test (its conventions, beside tests/process/test_readme.py's):
- in "## Python client", each ```python block is a program, run with this Python;
- in "## Export and import", each ```sh block is a script, run with `bash -e -o pipefail`
  in one working directory, `users-service` on PATH; a first line `# exits N` says the
  block is meant to exit N (0 otherwise);
- localhost:50051 is rewritten to the test server's port;
- a ```text block right after a block shows its stdout and stderr, in order, verbatim,
  except that `…` stands for any text within a line (times, etags, rates).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.process.server_process import ServerProcess, free_port, service_env, sqlite_url
from tests.process.test_readme import README, README_TARGET, fenced_blocks
from tests.process.test_readme_watch import section_of

SECTIONS = {"## Python client": "python", "## Export and import": "sh"}
EXITS_MARK = re.compile(r"#\s*exits\s+(\d+)\s*")
ELLIPSIS = "…"
RUN_SECONDS = 60


@dataclass(frozen=True)
class Example:
    heading: str
    language: str
    code: str
    shown: str | None
    exits: int

    def where(self) -> str:
        return f"README.md, {self.heading}:\n{self.code}"


def examples() -> list[Example]:
    text = README.read_text(encoding="utf-8")
    found: list[Example] = []
    for heading, language in SECTIONS.items():
        lines = section_of(text, heading)
        blocks = fenced_blocks(lines)
        runnable = [b for b in blocks if b.language == language]
        assert runnable, f"README.md {heading!r} has no ```{language} block"
        for position, block in enumerate(blocks):
            if block.language != language:
                continue
            following = blocks[position + 1] if position + 1 < len(blocks) else None
            shown = None
            if (
                following is not None
                and following.language == "text"
                and not any(line.strip() for line in lines[block.closing + 1 : following.opening])
            ):
                shown = "\n".join(following.body)
            mark = EXITS_MARK.fullmatch(block.body[0]) if block.body else None
            exits = int(mark.group(1)) if mark else 0
            found.append(Example(heading, language, "\n".join(block.body), shown, exits))
    return found


def matches(shown: str, printed: str) -> bool:
    """Line by line; `…` matches any text within its line."""
    shown_lines, printed_lines = shown.strip().splitlines(), printed.strip().splitlines()
    if len(shown_lines) != len(printed_lines):
        return False
    for expected, line in zip(shown_lines, printed_lines, strict=True):
        pattern = ".*".join(re.escape(part) for part in expected.split(ELLIPSIS))
        if not re.fullmatch(pattern, line):
            return False
    return True


def run(example: Example, target: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    code = example.code.replace(README_TARGET, target)
    command = [sys.executable, "-c", code] if example.language == "python" else []
    if example.language == "sh":
        command = ["bash", "-e", "-o", "pipefail", "-c", code]
    env = service_env()
    # `users-service`, the console script, is beside this Python.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        command,
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=RUN_SECONDS,
        check=False,
    )


def test_readme_client_and_export_examples_run_in_order_on_a_new_database(
    tmp_path: Path,
) -> None:
    found = examples()
    assert {e.heading for e in found} == set(SECTIONS)
    port = free_port()
    args = ("--port", str(port), "--database-url", sqlite_url(tmp_path / "readme.db"))
    with ServerProcess(tmp_path, args, port=port):
        for example in found:
            assert README_TARGET in example.code, f"{example.where()}\nuse {README_TARGET}"
            done = run(example, f"localhost:{port}", tmp_path)
            said = f"{example.where()}\nexit {done.returncode}:\n{done.stdout}"
            assert done.returncode == example.exits, said
            if example.shown is not None:
                assert matches(example.shown, done.stdout), (
                    f"{said}\nbut README.md shows\n{example.shown}"
                )
