"""Another commit of the service, checked out beside this one, run by the same venv.

The write-cost comparison of the watch suite (issue 13) runs the commit before the change
log next to the current code in one bench run. `git worktree add --detach` gives that
commit a tree of its own under a temporary folder (the repository's own work tree is left
alone); the service runs from it with PYTHONPATH naming that tree first, ahead of the
venv's editable install of this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from bench.measurement import REPO, BenchError, say


def python_env(tree: Path) -> dict[str, str] | None:
    """The environment a `python -m service` of `tree` needs; None for this repository,
    which the venv imports already."""
    if tree.resolve() == REPO:
        return None
    # The editable install's finder comes after PYTHONPATH in the import order, so the
    # tree's service and generated code are the ones imported.
    return {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{tree / 'generated'}"}


def short_commit(commit: str) -> str:
    return _git("rev-parse", "--short", f"{commit}^{{commit}}")


@contextlib.asynccontextmanager
async def worktree(commit: str) -> AsyncIterator[Path]:
    """`commit` checked out (detached) in a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="users-bench-") as folder:
        tree = Path(folder, commit)
        say(f"checking out {commit} into {tree}")
        await asyncio.to_thread(_git, "worktree", "add", "--detach", "--quiet", str(tree), commit)
        try:
            yield tree
        finally:
            await asyncio.to_thread(_git, "worktree", "remove", "--force", str(tree))


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()
