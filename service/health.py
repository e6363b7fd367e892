"""grpc.health.v1 with every method the protocol defines: Check, Watch and List.

grpcio-health-checking's asyncio servicer has no List, so a call to it raised inside the
servicer and was logged as an ERROR with a traceback: any client could flood the log.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer as _LibraryHealthServicer


class HealthServicer(_LibraryHealthServicer):
    """The library's asyncio servicer (the server flips each status), plus List."""

    async def List(
        self, request: health_pb2.HealthListRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthListResponse:
        """A snapshot of every registered service's status, "" included."""
        return health_pb2.HealthListResponse(
            statuses={
                name: health_pb2.HealthCheckResponse(status=status)
                for name, status in self._server_status.items()
            }
        )
