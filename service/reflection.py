"""Server reflection under both names clients ask for: grpc.reflection.v1 and v1alpha.

grpcio-reflection serves only v1alpha; grpcurl, Postman and newer grpc_cli ask for v1 first.
The two protocols are the same messages under another package name (field for field), so v1 is
the v1alpha servicer registered under the v1 service name, with a v1 copy of the reflection
file in the descriptor pool so that reflection can describe itself under either name.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as v1alpha_pb2
from grpc_reflection.v1alpha._async import ReflectionServicer

V1ALPHA_SERVICE = reflection.SERVICE_NAME  # "grpc.reflection.v1alpha.ServerReflection"
V1_SERVICE = "grpc.reflection.v1.ServerReflection"
_V1ALPHA_PACKAGE = "grpc.reflection.v1alpha"
_V1_PACKAGE = "grpc.reflection.v1"


def _add_v1_file(pool: descriptor_pool.DescriptorPool) -> None:
    """Put grpc/reflection/v1/reflection.proto (v1alpha's, renamed) into `pool`, once."""
    name = "grpc/reflection/v1/reflection.proto"
    try:
        pool.FindFileByName(name)
        return
    except KeyError:
        pass
    renamed = descriptor_pb2.FileDescriptorProto()
    v1alpha_pb2.DESCRIPTOR.CopyToProto(renamed)
    renamed.name = name
    renamed.package = _V1_PACKAGE
    renamed.options.Clear()  # v1alpha's Java/C# package options do not apply
    old, new = f".{_V1ALPHA_PACKAGE}.", f".{_V1_PACKAGE}."
    for message in renamed.message_type:  # reflection's messages nest none
        for field in message.field:
            if field.type_name:  # message and enum fields only
                field.type_name = field.type_name.replace(old, new)
    for service in renamed.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    pool.Add(renamed)


def enable_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Serve reflection v1 and v1alpha on `server`, listing `service_names` and both."""
    pool = descriptor_pool.Default()
    _add_v1_file(pool)
    names = (*service_names, V1_SERVICE, V1ALPHA_SERVICE)
    servicer = ReflectionServicer(names, pool=pool)
    reflection.enable_server_reflection(names, server, pool=pool)  # v1alpha
    v1_handlers = {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=v1alpha_pb2.ServerReflectionRequest.FromString,
            response_serializer=v1alpha_pb2.ServerReflectionResponse.SerializeToString,
        )
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1_SERVICE, v1_handlers),)
    )
