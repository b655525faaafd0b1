"""Server reflection that generic clients can use fully (grpcurl describe, ghz without
--proto): v1 and v1alpha, with service, method, message and enum symbols resolvable.

grpcio-reflection serves v1alpha only, and the protobuf runtime's descriptor pool does not find
a method by its full name (`pkg.Service.Method`), which is what clients ask for; both are
mended here. v1's messages are v1alpha's on the wire (same fields, new package)."""
from __future__ import annotations

import grpc
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha import _async, reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha._base import _file_descriptor_response, _not_found_error

V1ALPHA = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name
V1 = "grpc.reflection.v1.ServerReflection"


class Reflection(_async.ReflectionServicer):
    def _file_containing_symbol(self, request, fully_qualified_name):
        try:
            return _file_descriptor_response(self._pool.FindFileContainingSymbol(fully_qualified_name), request)
        except KeyError:
            pass
        service_name, _, method = fully_qualified_name.rpartition(".")
        try:
            service = self._pool.FindServiceByName(service_name)
        except KeyError:
            return _not_found_error(request)
        if method not in service.methods_by_name:
            return _not_found_error(request)
        return _file_descriptor_response(service.file, request)


def enable(service_names: list[str], server: grpc.aio.Server) -> None:
    """Reflection v1alpha and v1 on `server`, listing `service_names` and both reflection services."""
    servicer = Reflection([*service_names, V1ALPHA, V1], pool=descriptor_pool.Default())
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(V1, {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo, request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)}),))
