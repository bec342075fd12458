"""Log setup: text for people, JSON lines for collectors."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

# The fields of the one line per call (api/calls.py), passed as `extra`.
CALL_FIELDS = ("method", "code", "duration_ms", "peer")


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
