"""gRPC server reflection under both names tools ask for: ``grpc.reflection.v1`` (current
grpcurl, Postman, grpcui) and ``grpc.reflection.v1alpha`` (older tools).

``grpcio-reflection`` ships only v1alpha. The v1 protocol is the same messages with the same
field numbers in another package, so the v1 service is served by the same servicer, its
messages read and written with the v1alpha classes (identical bytes on the wire). The v1
service's own descriptor is registered in the default pool (the v1alpha file with its package
renamed), so that a tool can also describe it.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as alpha_pb2

V1ALPHA_SERVICE = reflection.SERVICE_NAME
V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE = f"{V1_PACKAGE}.ServerReflection"
_V1_FILE = "grpc/reflection/v1/reflection.proto"


def _register_v1_descriptor() -> None:
    """Add the v1 file (v1alpha's, package renamed) to the default descriptor pool, once."""
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(_V1_FILE)
        return
    except KeyError:
        pass
    alpha_package = alpha_pb2.DESCRIPTOR.package
    file = descriptor_pb2.FileDescriptorProto()
    alpha_pb2.DESCRIPTOR.CopyToProto(file)
    file.name = _V1_FILE
    file.package = V1_PACKAGE
    file.options.Clear()

    def rename(type_name: str) -> str:
        return type_name.replace(f".{alpha_package}.", f".{V1_PACKAGE}.", 1)

    def fix_fields(message: descriptor_pb2.DescriptorProto) -> None:
        for field in message.field:
            if field.type_name:
                field.type_name = rename(field.type_name)
        for nested in message.nested_type:
            fix_fields(nested)

    for message in file.message_type:
        fix_fields(message)
    for service in file.service:
        for method in service.method:
            method.input_type = rename(method.input_type)
            method.output_type = rename(method.output_type)
    pool.AddSerializedFile(file.SerializeToString())


def enable(service_names: Iterable[str], server: grpc.aio.Server) -> list[str]:
    """Serve reflection v1 and v1alpha on ``server`` listing ``service_names`` and both
    reflection services; returns the full list of names served."""
    _register_v1_descriptor()
    names = [*service_names, V1_SERVICE, V1ALPHA_SERVICE]
    servicer = reflection.aio.ReflectionServicer(names)
    reflection.enable_server_reflection(names, server)  # v1alpha, its own servicer
    v1 = grpc.method_handlers_generic_handler(
        V1_SERVICE,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=alpha_pb2.ServerReflectionRequest.FromString,
                response_serializer=alpha_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1,))
    return names
