"""SIGTERM and SIGINT mean stop, from the first line of `python -m service serve` on.

`__main__` calls catch_early before the imports that precede any event loop:
a stop signal then would otherwise meet the kernel's default (exit -15) or become a
KeyboardInterrupt, not the clean stop (exit 0) that service/startup.py makes of it once
the loop runs. Hence this module imports `signal` alone: asyncio would widen that window.
"""

from __future__ import annotations

import signal
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_received: list[int] = []


def catch_early() -> None:
    """Until the event loop takes over, a stop signal is only remembered."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _remember)


def received_early() -> bool:
    return bool(_received)


def _remember(signum: int, _frame: FrameType | None) -> None:
    _received.append(signum)
