"""`python -m service serve|migrate`."""

import sys

from service.cli import main

sys.exit(main())
