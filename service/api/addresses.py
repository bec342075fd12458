"""users.v1.AddressService servicer: parse the request, call the use case, convert back."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2
from users.v1 import address_service_pb2 as pb
from users.v1 import address_service_pb2_grpc as pb_grpc
from users.v1.resources_pb2 import Address as AddressMessage

from service.api import convert
from service.domain import addresses
from service.domain.ports import UnitOfWorkFactory
from service.domain.queries import PageTokens

Ctx = grpc.aio.ServicerContext[Any, Any]


class AddressService(pb_grpc.AddressServiceServicer):
    def __init__(self, new_uow: UnitOfWorkFactory, page_tokens: PageTokens) -> None:
        self._uow = new_uow
        self._page_tokens = page_tokens

    async def CreateAddress(self, request: pb.CreateAddressRequest, context: Ctx) -> AddressMessage:
        email = request.address.email if request.HasField("address") else None
        created = await addresses.create_address(self._uow, request.user_id, email)
        return convert.address_to_proto(created)

    async def GetAddress(self, request: pb.GetAddressRequest, context: Ctx) -> AddressMessage:
        address = await addresses.get_address(self._uow, request.id)
        return convert.address_to_proto(address)

    async def ListAddresses(
        self, request: pb.ListAddressesRequest, context: Ctx
    ) -> pb.ListAddressesResponse:
        page = await addresses.list_addresses(
            self._uow, self._page_tokens, request.user_id, request.page_size, request.page_token
        )
        return pb.ListAddressesResponse(
            addresses=[convert.address_to_proto(a) for a in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateAddress(self, request: pb.UpdateAddressRequest, context: Ctx) -> AddressMessage:
        updated = await addresses.update_address(
            self._uow,
            request.address.id,
            request.address.email,
            request.address.etag,
            list(request.update_mask.paths),
        )
        return convert.address_to_proto(updated)

    async def DeleteAddress(
        self, request: pb.DeleteAddressRequest, context: Ctx
    ) -> empty_pb2.Empty:
        await addresses.delete_address(self._uow, request.id, request.etag)
        return empty_pb2.Empty()
