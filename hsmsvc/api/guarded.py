"""gRPC health and reflection for the policy's principals only.

A certificate the CA issued to someone outside the policy learns nothing from the mTLS port,
not even which services it offers or whether the store is up. A load balancer asks the metrics
listener's ``/readyz`` instead (``api/metrics.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

from hsmsvc.errors import PermissionDenied

__all__ = ["GuardedHealth", "GuardedReflection"]


async def _admit(resolve: Callable[[Any], object], context: Any) -> None:
    try:
        resolve(context)
    except PermissionDenied as e:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(e))


class GuardedHealth(health.aio.HealthServicer):
    """The health service, answering policy principals only; the monitor sets it as before."""

    def __init__(self, resolve: Callable[[Any], object]) -> None:
        super().__init__()
        self._resolve = resolve

    async def Check(self, request: health_pb2.HealthCheckRequest, context: Any) -> Any:
        await _admit(self._resolve, context)
        return await super().Check(request, context)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        await _admit(self._resolve, context)
        await super().Watch(request, context)


class GuardedReflection(reflection.aio.ReflectionServicer):
    """Server reflection, answering policy principals only."""

    def __init__(self, names: tuple[str, ...], resolve: Callable[[Any], object]) -> None:
        super().__init__(names)
        self._resolve = resolve

    async def ServerReflectionInfo(self, request_iterator: AsyncIterable[reflection_pb2.ServerReflectionRequest],
                                   context: Any) -> AsyncIterator[reflection_pb2.ServerReflectionResponse]:
        await _admit(self._resolve, context)
        async for answer in super().ServerReflectionInfo(request_iterator, context):
            yield answer
