"""Reflection answers both protocol names on a real server: a grpc.reflection.v1 client (the
method path grpcurl asks first) and a v1alpha one list the services and describe the Generator."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from cvae.v1 import generator_pb2
from tests.service.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(120)


def _ask(server: ServerProcess, version: str, request: reflection_pb2.ServerReflectionRequest):  # type: ignore[no-untyped-def]
    # v1 and v1alpha are the same messages on the wire; only the service name differs.
    method = f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"
    call = server.channel().stream_stream(
        method,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    (response,) = list(call(iter([request]), timeout=10))
    return response


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_lists_and_describes_the_generator(server: ServerProcess, version: str) -> None:
    listed = _ask(server, version, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {service.name for service in listed.list_services_response.service}
    assert {
        "cvae.v1.Generator",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    described = _ask(
        server,
        version,
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="cvae.v1.Generator"),
    )
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(data)
        for data in described.file_descriptor_response.file_descriptor_proto
    ]
    methods = {m.name for f in files for s in f.service if s.name == "Generator" for m in s.method}
    # Every method of the contract, as the generated stubs know it.
    assert methods == set(generator_pb2.DESCRIPTOR.services_by_name["Generator"].methods_by_name)


def test_reflection_describes_itself_under_the_v1_name(server: ServerProcess) -> None:
    request = reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="grpc.reflection.v1.ServerReflection"
    )
    described = _ask(server, "v1", request)
    (data,) = described.file_descriptor_response.file_descriptor_proto
    file = descriptor_pb2.FileDescriptorProto.FromString(data)
    assert file.package == "grpc.reflection.v1"
    (method,) = file.service[0].method
    assert method.input_type == ".grpc.reflection.v1.ServerReflectionRequest"


def test_an_unknown_symbol_is_an_error_answer_not_a_failed_call(server: ServerProcess) -> None:
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.such.Thing")
    answer = _ask(server, "v1", request)
    assert answer.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
