"""users.v1.AddressService servicer."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2
from users.v1 import address_service_pb2 as pb
from users.v1 import address_service_pb2_grpc as pb_grpc
from users.v1.resources_pb2 import Address as AddressMessage

from service.api.status import maps_errors
from service.domain.errors import NotImplementedYetError
from service.domain.ports import UnitOfWorkFactory

Ctx = grpc.aio.ServicerContext[Any, Any]
SERVICE = "users.v1.AddressService"


@maps_errors
class AddressService(pb_grpc.AddressServiceServicer):
    def __init__(self, new_uow: UnitOfWorkFactory) -> None:
        self._uow = new_uow

    async def CreateAddress(self, request: pb.CreateAddressRequest, context: Ctx) -> AddressMessage:
        raise NotImplementedYetError(f"{SERVICE}/CreateAddress")

    async def GetAddress(self, request: pb.GetAddressRequest, context: Ctx) -> AddressMessage:
        raise NotImplementedYetError(f"{SERVICE}/GetAddress")

    async def ListAddresses(
        self, request: pb.ListAddressesRequest, context: Ctx
    ) -> pb.ListAddressesResponse:
        raise NotImplementedYetError(f"{SERVICE}/ListAddresses")

    async def UpdateAddress(self, request: pb.UpdateAddressRequest, context: Ctx) -> AddressMessage:
        raise NotImplementedYetError(f"{SERVICE}/UpdateAddress")

    async def DeleteAddress(
        self, request: pb.DeleteAddressRequest, context: Ctx
    ) -> empty_pb2.Empty:
        raise NotImplementedYetError(f"{SERVICE}/DeleteAddress")
