"""scripts/buf_breaking.sh (run by `make lint`) in a clone: a renamed field fails the
check against the previous commit, unless the commit says the break is deliberate."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = Path("protos/users/v1/resources.proto")
SCRIPT = Path("scripts/buf_breaking.sh")


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def check(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_renamed_field_fails_unless_the_commit_says_it_is_deliberate(tmp_path: Path) -> None:
    if shutil.which("npx") is None or not (ROOT / "node_modules" / ".bin" / "buf").exists():
        pytest.fail("no buf: run `npm install` (make lint does)")
    repo = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", str(ROOT), str(repo))
    (repo / "node_modules").symlink_to(ROOT / "node_modules")
    # The script as it is in this tree (the clone has what is committed).
    shutil.copy(ROOT / SCRIPT, repo / SCRIPT)

    done = check(repo)
    assert done.returncode == 0, done.stdout + done.stderr

    proto = repo / RESOURCES
    text = proto.read_text()
    assert "  string name = 2;\n" in text
    proto.write_text(text.replace("  string name = 2;\n", "  string full_name = 2;\n", 1))
    git(repo, "commit", "--quiet", "-am", "Rename User.name")
    done = check(repo)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "full_name" in done.stdout + done.stderr

    git(repo, "commit", "--quiet", "--amend", "-m", "Rename\n\nAPI-Break: a test of the check")
    done = check(repo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "deliberate: a test of the check" in done.stdout
