"""Log setup: text for people, JSON lines for collectors."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime

# The fields of the one line per call (api/calls.py), passed as `extra`.
CALL_FIELDS = ("method", "code", "duration_ms", "peer", "trace_id", "span_id")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CALL_FIELDS:
            if name in record.__dict__:
                line[name] = record.__dict__[name]
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


# grpc's own logger, which reports a response or status that could not be sent.
GRPC_CORE_LOGGER = "grpc._cython.cygrpc"


class ClientGoneFilter(logging.Filter):
    """grpc logs an ERROR with a traceback when a response or status cannot be sent
    because the client left (cancelled, deadline passed, connection lost) before grpc
    noticed: an ordinary event, so it becomes one INFO line without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and "ExecuteBatchError" in str(record.msg):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = (
                "a call ended before its reply could be sent (%s)",
                (_method_of(record.getMessage()),),
            )
            record.exc_info, record.exc_text = None, None
        return True


def _method_of(message: str) -> str:
    # grpc's message ends with "by servicer method [/pkg.Service/Method]".
    start, end = message.rfind("["), message.rfind("]")
    return message[start + 1 : end] if 0 <= start < end else "client gone"


# What SQLAlchemy's pool logs, at ERROR with a traceback, when a connection it takes back
# cannot be reset (its rollback-on-return failed).
POOL_RESET_FAILED = "Exception during reset or similar"


class LostConnectionFilter(logging.Filter):
    """A database restart, a failover or a killed session can leave a connection dead
    between its last statement and its return to the pool; the pool's rollback-on-return
    then fails and SQLAlchemy logs an ERROR with a traceback. The pool discards that
    connection and the next checkout connects afresh (API.md: the service recovers by
    itself), so a lost connection (`is_lost`, the database layer's judgement) becomes one
    WARNING line. Any other reset failure (a connection misused by two tasks, say) is a
    defect and stays an ERROR."""

    def __init__(self, is_lost: Callable[[BaseException], bool]) -> None:
        super().__init__()
        self._is_lost = is_lost

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.msg == POOL_RESET_FAILED:
            error = record.exc_info[1] if record.exc_info else None
            if error is not None and self._is_lost(error):
                record.levelno, record.levelname = logging.WARNING, "WARNING"
                record.msg, record.args = (
                    "a pooled connection was lost before it could be reset, and is "
                    "discarded (%s: %s)",
                    (type(error).__name__, str(error).splitlines()[0] if str(error) else ""),
                )
                record.exc_info, record.exc_text = None, None
        return True


def quiet_lost_connections(pool_logger_name: str, is_lost: Callable[[BaseException], bool]) -> None:
    """Installs LostConnectionFilter on a pool's logger, once."""
    logger = logging.getLogger(pool_logger_name)
    if not any(isinstance(f, LostConnectionFilter) for f in logger.filters):
        logger.addFilter(LostConnectionFilter(is_lost))


def configure_logging(log_format: str) -> None:
    # Neither format prints the caller's file and line, the thread or the process, so
    # records do not collect them (the switches of the logging HOWTO's "Optimization"
    # section): the line every call writes costs less CPU (BENCHMARKS.md).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    core = logging.getLogger(GRPC_CORE_LOGGER)
    if not any(isinstance(f, ClientGoneFilter) for f in core.filters):
        core.addFilter(ClientGoneFilter())
