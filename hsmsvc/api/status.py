"""Errors to gRPC status codes: the one table, and the wrapper every RPC runs in.

Anything that is not an :class:`~hsmsvc.errors.HsmsvcError` is a bug: the
client sees INTERNAL with the request id only, and the traceback goes to the
server log. grpcio would otherwise send ``str(exception)`` to the client.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import os
import re
import time
from time import perf_counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Final, TypeVar

import grpc
from grpc import StatusCode

from hsmsvc import errors
from hsmsvc.api.logs import ACCESS, REQUEST_ID
from hsmsvc.api.runner import InlineState, Lane, Runner
from hsmsvc.loopguard import WouldBlock
from hsmsvc.service.context import Caller

__all__ = ["CODES", "UNDECODABLE", "Dispatch", "GenericHandlersOnly", "Observed", "code_for", "message_for",
           "request_id", "rpc", "stream_rpc"]

log = logging.getLogger("hsmsvc.api")

# Most specific first: the first class an error is an instance of decides.
CODES: Final[tuple[tuple[type[errors.HsmsvcError], StatusCode], ...]] = (
    (errors.InvalidInput, StatusCode.INVALID_ARGUMENT),
    (errors.KeyNotFound, StatusCode.NOT_FOUND),
    (errors.AlreadyExists, StatusCode.ALREADY_EXISTS),
    (errors.KeyUsageViolation, StatusCode.FAILED_PRECONDITION),
    (errors.KeyStateError, StatusCode.FAILED_PRECONDITION),
    (errors.Unsupported, StatusCode.FAILED_PRECONDITION),
    (errors.ModeRefused, StatusCode.FAILED_PRECONDITION),
    (errors.PermissionDenied, StatusCode.PERMISSION_DENIED),
    (errors.AttemptsExceeded, StatusCode.RESOURCE_EXHAUSTED),
    (errors.Overloaded, StatusCode.RESOURCE_EXHAUSTED),
    (errors.BackendUnavailable, StatusCode.UNAVAILABLE),
    # A verification failure that reaches here was not turned into a result by
    # its use case (a KCV mismatch on import): the request's data is wrong.
    (errors.VerificationFailed, StatusCode.INVALID_ARGUMENT),
)


def code_for(e: errors.HsmsvcError) -> StatusCode:
    for cls, code in CODES:
        if isinstance(e, cls):
            return code
    return StatusCode.INTERNAL


def message_for(e: errors.HsmsvcError) -> str:
    # HsmsvcError's text is "field: reason", built from names and rules only.
    return str(e)


class Observed:
    """Per-call bookkeeping every servicer needs: metrics, the principal lookup, and where use cases run."""

    def __init__(self, principal: Callable[[Any], Any], record: Callable[[str, str, float], None],
                 runner: Runner) -> None:
        self.principal = principal
        self.record = record
        self.runner = runner
        self.cut_at: float | None = None
        """When the shutdown's grace ends (``time.monotonic()``): calls still running then are cut,
        UNAVAILABLE to their clients."""

    def cut(self) -> bool:
        """Whether the shutdown's grace is over, so a call ending now was cut."""
        return self.cut_at is not None and time.monotonic() >= self.cut_at


def _cut(observed: Observed, context: Any) -> StatusCode:
    """The code a client saw for a call that ended without its handler's answer: cut by the
    server's shutdown, by the client's deadline, or cancelled by the client."""
    if observed.cut():
        return StatusCode.UNAVAILABLE
    try:
        left = context.time_remaining()
    except Exception:  # no deadline to ask about: a plain cancel
        left = None
    if left is not None and left <= 0:
        return StatusCode.DEADLINE_EXCEEDED
    return StatusCode.CANCELLED


R = TypeVar("R")


# Ids the server makes need to be unique, not unpredictable: this process's id
# and start time, then a counter (a random UUID per call cost a urandom read).
_PREFIX: Final = f"{os.getpid():x}{time.time_ns() // 1000 % 16**8:08x}-"
_SERIAL: Final = itertools.count(1)


# A client's own id is kept when it is a plain token; anything else gets ours,
# so an id can go into a log line as it is.
_CLIENT_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id(metadata: Iterable[tuple[str, Any]]) -> str:
    """The client's ``x-request-id`` if it is a plain token, else a fresh id of ours."""
    for k, v in metadata:
        if k == "x-request-id" and isinstance(v, str) and _CLIENT_ID.fullmatch(v):
            return v
    return f"{_PREFIX}{next(_SERIAL):x}"


def _call_id(context: Any) -> tuple[str, contextvars.Token[str] | None]:
    """The call's request id, as :class:`Dispatch` set it; read from the context otherwise."""
    rid = REQUEST_ID.get()
    if rid != "-":
        return rid, None
    rid = request_id(context.invocation_metadata() or ())
    return rid, REQUEST_ID.set(rid)


class _Undecodable:
    """A unary request whose bytes are not its message: any read of a field refuses it.

    grpc.aio answers a deserializer's exception on a unary call itself, before
    any handler runs: UNKNOWN, with the exception's class in the details, and no
    access-log line or metric. So the deserializer hands the handler this
    instead, and the use case's first read of the request raises
    :class:`~hsmsvc.errors.InvalidInput`: the call ends INVALID_ARGUMENT through
    :func:`rpc`, logged and counted like any other refusal, at no cost to a
    well-formed request.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # introspection (copy, pickle, doctest's finder), not a field read
            raise AttributeError(name)
        raise errors.InvalidInput("request", "cannot be decoded")

    def __repr__(self) -> str:
        return "<undecodable request>"


UNDECODABLE: Final = _Undecodable()


def _checked_decoder(deserialize: Callable[[bytes], Any], unary: bool) -> Callable[[bytes], Any]:
    """``deserialize`` whose failure is the request's fault: INVALID_ARGUMENT, never UNKNOWN or INTERNAL.

    A stream's messages are read by the handler's own loop, so there the error
    is raised, and :func:`stream_rpc` ends the stream with INVALID_ARGUMENT.
    """

    def decode(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:  # DecodeError; anything else the parser raises is the same bad input
            if unary:
                return UNDECODABLE
            raise errors.InvalidInput("request", "cannot be decoded") from None

    return decode


def _with_checked_decoder(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """The same handler, its request deserializer wrapped by :func:`_checked_decoder`."""
    des = handler.request_deserializer
    if des is None:
        return handler
    decode = _checked_decoder(des, not handler.request_streaming)
    ser = handler.response_serializer
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(handler.stream_stream, decode, ser)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(handler.stream_unary, decode, ser)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(handler.unary_stream, decode, ser)
    return grpc.unary_unary_rpc_method_handler(handler.unary_unary, decode, ser)


# Only hsmsvc's own methods run through rpc/stream_rpc, which turn the refusal
# into a status; health and reflection keep grpcio's own handling.
_OWN: Final = "/hsmsvc."


class GenericHandlersOnly:
    """What generated ``add_*_to_server`` functions register into: generic handlers only,
    served through one :class:`~hsmsvc.api.status.Dispatch`.

    grpc.aio (1.85) keeps one pending request per *registered* method and, at
    every call, waits on all of them (``asyncio.wait`` over one task per method,
    46 here), which under callgrind dominated a handler returning a constant
    (``docs/performance.md``). Generic handlers are one dictionary lookup.
    """

    def __init__(self) -> None:
        self.handlers: list[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self.handlers.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        return None


class Dispatch(grpc.GenericRpcHandler):
    """The server's one generic handler: it names each call's request id, then finds its method.

    grpc.aio looks the handler up inside the call's own task, with the call's
    metadata already converted for the lookup. The id is set there, in that
    task's context, where the handler and its log lines read it. Reading it in
    the handler instead converted the metadata a second time
    (``context.invocation_metadata()``, measured in ``docs/performance.md``).
    A method's handler is found once
    and kept; an unknown name is not kept. hsmsvc's own methods are kept with
    their request deserializer wrapped (:func:`_checked_decoder`), once, so an
    undecodable request is INVALID_ARGUMENT.
    """

    def __init__(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self._handlers = tuple(handlers)
        self._methods: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        REQUEST_ID.set(request_id(details.invocation_metadata or ()))
        method: str = details.method
        found = self._methods.get(method)
        if found is not None:
            return found
        for h in self._handlers:
            handler = h.service(details)
            if handler is not None:
                if method.startswith(_OWN):
                    handler = _with_checked_decoder(handler)
                self._methods[method] = handler
                return handler
        return None


async def _run(lane: Lane, state: InlineState | None, runner: Runner, fn: Callable[[Any, Any, Caller], R],
               *, servicer: Any, request: Any, caller: Caller) -> R:
    """``fn`` on the loop when its lane is INLINE and it needs no I/O, else on its lane's executor."""
    if state is not None and runner.first_inline(state):
        try:
            return runner.call(state, fn, servicer, request, caller)
        except WouldBlock:
            pass
    return await runner.offload(lane, fn, servicer, request, caller)


def rpc(method: str, lane: Lane = Lane.OTHER,
        ) -> Callable[[Callable[[Any, Any, Caller], R]], Callable[[Any, Any, Any], Awaitable[R]]]:
    """Wrap a unary handler ``fn(self, request, caller)``: identity, authorization, errors, metrics, log.

    A unary RPC and its stream form share one ``fn``: ``Foo = rpc("S.Foo")(_foo)`` and
    ``StreamFoo = stream_rpc("S.StreamFoo", ...)(_foo)``. ``lane`` says where the use
    case runs (``api/runner.py``).
    """

    def deco(fn: Callable[[Any, Any, Caller], R]) -> Callable[[Any, Any, Any], Awaitable[R]]:
        state = InlineState() if lane is Lane.INLINE else None

        async def handler(self: Any, request: Any, context: Any) -> R:
            rid, token = _call_id(context)
            started = perf_counter()
            # The code's name, not the enum: StatusCode.name is a Python-level property.
            code = "OK"
            principal_name = "-"
            try:
                context.set_trailing_metadata((("x-request-id", rid),))
                principal = self.observed.principal(context)
                principal_name = principal.name
                principal.require_call(method)
                return await _run(lane, state, self.observed.runner, fn, servicer=self, request=request,
                                  caller=Caller(principal, method, rid))
            except errors.HsmsvcError as e:
                status = code_for(e)
                code = status.name
                await context.abort(status, message_for(e))
                raise  # not reached: abort raises
            except (grpc.aio.AbortError, grpc.RpcError):
                raise
            except asyncio.CancelledError:
                code = _cut(self.observed, context).name
                raise
            except Exception:
                code = "INTERNAL"
                log.exception("unhandled error", extra={"method": method})
                await context.abort(StatusCode.INTERNAL, f"internal error; request id {rid}")
                raise
            finally:
                elapsed = perf_counter() - started
                self.observed.record(method, code, elapsed)
                ACCESS.write("rpc", method, principal_name, code, elapsed)
                if token is not None:
                    REQUEST_ID.reset(token)

        handler.__name__ = method.rpartition(".")[2]
        return handler

    return deco


def stream_rpc(
    method: str, response: Callable[..., Any], lane: Lane = Lane.OTHER,
) -> Callable[[Callable[[Any, Any, Caller], Any]], Callable[[Any, Any, Any], AsyncIterator[Any]]]:
    """Wrap a per-message handler ``fn(self, request, caller)`` as a bidi stream of ``response``.

    Identity and authorization are checked once per stream. Each message's
    outcome goes in-band: ``response(correlation_id, code, message, response)``,
    code 0 with the result or a google.rpc code and message. The loop is the
    wrapper's own, so a message passes through one generator, not two.
    """

    def deco(fn: Callable[[Any, Any, Caller], Any]) -> Callable[[Any, Any, Any], AsyncIterator[Any]]:
        state = InlineState() if lane is Lane.INLINE else None

        async def handler(self: Any, requests: Any, context: Any) -> AsyncIterator[Any]:
            rid, token = _call_id(context)
            started = perf_counter()
            code = StatusCode.OK
            principal_name = "-"
            try:
                principal = self.observed.principal(context)
                principal_name = principal.name
                principal.require_call(method)
                caller = Caller(principal, method, rid)
                runner: Runner = self.observed.runner
                async for q in requests:
                    try:
                        out = response(correlation_id=q.correlation_id,
                                       response=await _run(lane, state, runner, fn, servicer=self, request=q.request,
                                                           caller=caller))
                    except errors.HsmsvcError as e:
                        out = response(correlation_id=q.correlation_id, code=code_for(e).value[0],
                                       message=message_for(e))
                    except Exception:
                        log.exception("unhandled error in stream item")
                        out = response(correlation_id=q.correlation_id, code=StatusCode.INTERNAL.value[0],
                                       message=f"internal error; request id {rid}")
                    yield out
                if self.observed.cut():
                    # grpc ends a stream cut at the shutdown's grace as if its client had closed it
                    # (and the call is not marked cancelled then): its client saw UNAVAILABLE.
                    code = StatusCode.UNAVAILABLE
            except errors.HsmsvcError as e:
                code = code_for(e)
                await context.abort(code, message_for(e))
            except (grpc.aio.AbortError, grpc.RpcError):
                raise
            except (asyncio.CancelledError, GeneratorExit):
                # Closed before the client's last message: grpc cut the stream (issue 31: a stream
                # cut at shutdown, the client seeing UNAVAILABLE, was logged OK).
                code = _cut(self.observed, context)
                raise
            except Exception:
                code = StatusCode.INTERNAL
                log.exception("unhandled error", extra={"method": method})
                await context.abort(code, f"internal error; request id {rid}")
            finally:
                elapsed = perf_counter() - started
                self.observed.record(method, code.name, elapsed)
                ACCESS.write("stream", method, principal_name, code.name, elapsed)
                try:
                    if token is not None:
                        REQUEST_ID.reset(token)
                except ValueError:
                    # A client that goes away mid-stream has the generator closed from
                    # another context: there is nothing of this stream's to restore.
                    pass

        handler.__name__ = method.rpartition(".")[2]
        return handler

    return deco


