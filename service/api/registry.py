"""Registers servicers through the call layer, with deserializers that never fail.

grpc answers undecodable request bytes with INTERNAL ("Exception deserializing
request") before any handler runs; API.md wants INVALID_ARGUMENT, so the
deserializer hands the call layer an Undecodable marker instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError, Message

from service.api.calls import CallLayer, Method, Undecodable

# A method that only reads says so in the proto (idempotency_level = NO_SIDE_EFFECTS);
# every other method writes, and needs a write token when auth is on.
NO_SIDE_EFFECTS = descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS
# Streams that stay open until the client leaves (api/calls.py, Method.open_ended).
OPEN_ENDED = frozenset({"users.v1.UserService.WatchUsers"})


def add_servicer(
    server: grpc.aio.Server, servicer: object, service: ServiceDescriptor, layer: CallLayer
) -> None:
    handlers = {m.name: _handler(servicer, service, m, layer) for m in service.methods}
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    # As the generated add_*_to_server does: the faster lookup (grpc-stubs predates it).
    server.add_registered_method_handlers(service.full_name, handlers)  # type: ignore[attr-defined]


def _handler(
    servicer: object, service: ServiceDescriptor, descriptor: MethodDescriptor, layer: CallLayer
) -> grpc.RpcMethodHandler[Any, Any]:
    method = Method(
        service=service.full_name,
        name=descriptor.name,
        writes=writes(descriptor),
        open_ended=descriptor.full_name in OPEN_ENDED,
    )
    behaviour = getattr(servicer, descriptor.name)
    decode = _decoder(message_factory.GetMessageClass(descriptor.input_type))
    encode = message_factory.GetMessageClass(descriptor.output_type).SerializeToString
    if descriptor.client_streaming and descriptor.server_streaming:
        raise NotImplementedError(f"{method.path}: bidirectional streaming has no call layer")
    if descriptor.server_streaming:
        return grpc.unary_stream_rpc_method_handler(
            layer.server_stream(method, behaviour), decode, _passing_bytes(encode)
        )
    if descriptor.client_streaming:
        return grpc.stream_unary_rpc_method_handler(
            layer.client_stream(method, behaviour), decode, encode
        )
    return grpc.unary_unary_rpc_method_handler(layer.unary(method, behaviour), decode, encode)


def _passing_bytes(encode: Callable[[Message], bytes]) -> Callable[[Message | bytes], bytes]:
    """A stream may send a message encoded already: WatchUsers encodes each change once
    for all its watchers (domain/changes.py)."""

    def encode_unless_bytes(message: Message | bytes) -> bytes:
        return message if type(message) is bytes else encode(message)  # type: ignore[arg-type]

    return encode_unless_bytes


def writes(method: MethodDescriptor) -> bool:
    return method.GetOptions().idempotency_level != NO_SIDE_EFFECTS


def _decoder(message_type: type[Message]) -> Callable[[bytes], Message | Undecodable]:
    parse = message_type.FromString
    undecodable = Undecodable(message_type.DESCRIPTOR.full_name)

    def decode(data: bytes) -> Message | Undecodable:
        try:
            return parse(data)
        except DecodeError:
            return undecodable

    return decode
