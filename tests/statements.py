"""The SQL a server's engine sends, recorded from SQLAlchemy's `before_cursor_execute`
event: what tests count, filter or EXPLAIN is what really went to the database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


class Sent(NamedTuple):
    statement: str
    parameters: Any


@contextmanager
def recorded_statements(
    engine: AsyncEngine, keep: Callable[[str], bool] = lambda _statement: True
) -> Iterator[list[Sent]]:
    """The statements `keep` accepts, in order, as the block runs (the list fills live)."""
    sent: list[Sent] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if keep(statement):
            sent.append(Sent(statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
