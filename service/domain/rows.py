"""Users and addresses as plain tuples, for StreamUsers, where a dataclass a row costs too much.

Times are whole microseconds since the Unix epoch (UTC): what the transport needs, with no
datetime built and taken apart again for each of a million rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# (id, name, email, create_time µs, update_time µs, version)
UserRow = tuple[int, str, str, int, int, int]
# (id, user_id, email, create_time µs, update_time µs, version)
AddressRow = tuple[int, int, str, int, int, int]


@dataclass(frozen=True, slots=True)
class RowBatch:
    users: Sequence[UserRow]
    # FULL view: each user's addresses by user id, ordered by id; None in the BASIC view.
    addresses: Mapping[int, Sequence[AddressRow]] | None = None
