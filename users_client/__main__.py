"""`python -m users_client export|import|watch`, as `users-service` runs them."""

import sys

from users_client.cli import main

sys.exit(main())
