"""Hypothesis strategies for any protobuf request: random and malformed field values."""

from __future__ import annotations

from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
NASTY_TEXT = [
    "", " ", "\x00", "a\x00b", "\\", "%", "_", "%_%", "'; DROP TABLE users; --", "😀" * 60,
    "e\u0301" * 30, "\U0010ffff", "x" * 5000, "a@b", "@", "a@", "@b.c", "A@EXAMPLE.COM",
    "user@example.com", "*", "name", "email", "id desc", "name desc, id", "\u202e", "\ufeff",
]  # fmt: skip
MAX_DEPTH = 3


def _edges(low: int, high: int) -> st.SearchStrategy[int]:
    edges = st.sampled_from([0, 1, -1, 2, low, high, low + 1, high - 1, 1000, 1001, 10**12])
    return st.one_of(edges.filter(lambda n: low <= n <= high), st.integers(low, high))


F = FieldDescriptor
_TEXT = st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=40), st.emails())
_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    **dict.fromkeys((F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64), _edges(*INT64)),
    **dict.fromkeys((F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32), _edges(*INT32)),
    **dict.fromkeys((F.TYPE_UINT32, F.TYPE_FIXED32), st.integers(0, 2**32 - 1)),
    **dict.fromkeys((F.TYPE_UINT64, F.TYPE_FIXED64), st.integers(0, 2**64 - 1)),
    F.TYPE_BOOL: st.booleans(),
    F.TYPE_ENUM: st.integers(-3, 5),  # open enums: unknown numbers arrive too
    F.TYPE_DOUBLE: st.floats(),
    F.TYPE_FLOAT: st.floats(width=32),
    F.TYPE_BYTES: st.binary(max_size=40),
    F.TYPE_STRING: _TEXT,
}


def _field(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.message_type is not None:
        if depth >= MAX_DEPTH:
            return st.nothing()
        one: st.SearchStrategy[Any] = messages(field.message_type, depth + 1)
    else:
        one = _SCALARS[field.type]
    if field.is_repeated:
        return st.lists(one, max_size=5)
    return one


def _build(message_type: type[Message], values: dict[str, Any]) -> Message:
    message = message_type()
    for name, value in values.items():
        target = getattr(message, name)
        if isinstance(value, list):
            if value and isinstance(value[0], Message):
                for item in value:
                    target.add().CopyFrom(item)
            else:
                target.extend(value)
        elif isinstance(value, Message):
            target.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages with a random subset of fields set to random, edge or hostile values."""
    message_type = message_factory.GetMessageClass(descriptor)
    optional = {field.name: _field(field, depth) for field in descriptor.fields}
    return st.fixed_dictionaries({}, optional=optional).map(
        lambda values: _build(message_type, values)
    )


def payloads(descriptor: Descriptor) -> st.SearchStrategy[bytes]:
    """Serialized messages, raw random bytes, and truncated or bit-flipped messages."""
    serialized = messages(descriptor).map(lambda m: m.SerializeToString())

    def damaged(data: bytes, cut: int, flip: int) -> bytes:
        chopped = bytearray(data[: cut % (len(data) + 1)] or b"\x0a")
        chopped[flip % len(chopped)] ^= 0xFF
        return bytes(chopped)

    return st.one_of(
        # Well-formed messages twice as often: they reach past decoding into the rules.
        serialized,
        serialized,
        st.binary(max_size=200),
        st.builds(damaged, serialized, st.integers(0, 10**6), st.integers(0, 10**6)),
        st.sampled_from([b"\x0a\xff\xff\xff\xff\x0f", b"\x08", b"\xff" * 16, b"\x0a\x05abc"]),
    )
