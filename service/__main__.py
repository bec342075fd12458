"""`python -m service serve|migrate`."""

import sys

from service import stop_signals

# `serve` stops cleanly on SIGTERM from here on, through the slow imports below; `migrate`
# keeps the default handlers, so a signal still interrupts it.
if sys.argv[1:2] == ["serve"]:
    stop_signals.catch_early()

from service.cli import main

sys.exit(main())
