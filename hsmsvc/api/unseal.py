"""A server on a share-sealed LMK starts sealed: the gate in front, and the unseal RPCs (issue 29).

Dual control of the running service, as Vault's unseal and payShield's
"authorised state" give it: the server binds its port with the LMK still
sealed, and opens it only when k custodians have each given their share
(``CeremonyService.SubmitUnsealShare``, from ``hsmsvc unseal`` under the
custodian's own certificate). Until then :class:`Gate`, the server's one generic
handler, answers every call with UNAVAILABLE ``sealed: 1 of 2 shares entered;
run `hsmsvc unseal```, except the two unseal RPCs, health (NOT_SERVING) and
reflection. Callers outside the policy get PERMISSION_DENIED, as they would
from an open server. When the LMK opens, the server builds its backend, store,
services and handlers exactly as an unsealed start does (``api/server.py``),
writes an ``lmk.unseal`` audit row naming the custodians' principals, and then
switches the gate over to them.

The gate exists only in sealed mode: a server on a passphrase-sealed LMK, a
token or a pool serves through its :class:`~hsmsvc.api.status.Dispatch`
directly, and answers the two unseal RPCs itself (not share-sealed).

A share crosses this module only as the request's bytes, handed at once to
:class:`~hsmsvc.hsm.soft.unsealing.Unsealer` (``hsm/``), which parses, keeps and
wipes it; nothing here logs, stores or answers with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from hsmsvc.api.config import ServerConfig
from hsmsvc.api.logs import ACCESS
from hsmsvc.api.metrics import Metrics
from hsmsvc.api.status import Dispatch, GenericHandlersOnly, Observed, rpc
from hsmsvc.errors import HsmsvcError, InvalidInput, KeyStateError, PermissionDenied
from hsmsvc.hsm.config import SoftConfig
from hsmsvc.hsm.soft import sharesealed
from hsmsvc.hsm.soft.unsealing import Opened, Progress, Unsealer
from hsmsvc.keys.model import AuditEvent
from hsmsvc.service.context import Caller
from hsmsvc_client.v1 import ceremony_service_pb2 as m
from hsmsvc_client.v1 import ceremony_service_pb2_grpc as g

__all__ = ["Gate", "UnsealServicer", "audit_event", "share_sealed"]

log = logging.getLogger("hsmsvc.unseal")

_CEREMONY: Final = m.DESCRIPTOR.services_by_name["CeremonyService"].full_name
UNSEAL_METHODS: Final = frozenset({f"/{_CEREMONY}/SubmitUnsealShare", f"/{_CEREMONY}/GetSealStatus"})
HINT: Final = "run `hsmsvc unseal`"


def share_sealed(config: ServerConfig) -> Path | None:
    """The LMK file when the configured soft LMK is share-sealed; refuses a deployment that cannot
    be unsealed by custodians at one process (several workers, a pool) or that names a passphrase."""
    found = None
    for member in config.backend.members:
        if not isinstance(member, SoftConfig):
            continue
        if sharesealed.kind_of(Path(member.sealed_lmk)) is not sharesealed.SealKind.SHARES:
            continue
        if config.backend.kind == "pool":
            raise InvalidInput("backend", "a share-sealed LMK is opened by custodians in one server process: "
                                          "kind = \"soft\", not a pool")
        if config.workers > 1:
            raise InvalidInput("workers", "a share-sealed LMK is opened by custodians in one server process: "
                                          "workers = 1 (run more servers, each unsealed, behind a balancer)")
        if member.passphrase is not None:
            raise InvalidInput("backend", "the LMK is share-sealed: custodians open it (hsmsvc unseal); "
                                          "remove the passphrase setting")
        found = Path(member.sealed_lmk)
    return found


def audit_event(opened: Opened) -> AuditEvent:
    """``lmk.unseal``: the principals that gave the shares (authenticated), with the index each gave and
    the holder the ceremony named for it (a label); the seal and the LMK's KCV. No share material."""
    principals = [e.principal for e in opened.entered]
    joined = ",".join(principals)
    actor = joined if len(joined) <= 128 else f"{principals[-1]}+{len(principals) - 1}"
    holders = [h.name if (h := opened.header.holder(e.index)) else "?" for e in opened.entered]
    return AuditEvent(actor, "lmk.unseal", None, None, (
        ("custodians", joined), ("indices", ",".join(str(e.index) for e in opened.entered)),
        ("holders", ",".join(holders)), ("seal_id", opened.header.seal_id),
        ("threshold", f"{opened.header.threshold} of {opened.header.count}"),
        ("lmk_kcv", opened.header.lmk_kcv.hex().upper()),
    ))


def _status(progress: Progress | None, header: sharesealed.SealHeader | None, sealed: bool) -> m.SealStatus:
    if header is None:
        return m.SealStatus(sealed=False)
    out = m.SealStatus(sealed=sealed, seal_id=header.seal_id, threshold=header.threshold,
                       share_count=header.count)
    if sealed and progress is not None:
        out.entered = len(progress.entered)
        out.entered_indices.extend(e.index for e in progress.entered)
        if progress.expires_at is not None:
            ts = Timestamp()
            ts.FromDatetime(progress.expires_at)
            out.expire_time.CopyFrom(ts)
    return out


@dataclass
class _State:
    unsealer: Unsealer | None
    activate: Callable[[Opened], None]
    opened: bool = False


class UnsealServicer(g.CeremonyServiceServicer):
    """``SubmitUnsealShare`` and ``GetSealStatus``; the rest of CeremonyService is ``api/ceremony.py``'s.

    ``activate`` runs on an executor thread when k shares open the LMK: it builds the
    serving server on the opened backend and returns once the gate serves through it.
    """

    def __init__(self, observed: Observed, unsealer: Unsealer | None, activate: Callable[[Opened], None]) -> None:
        self.observed = observed
        self.state = _State(unsealer, activate)

    @property
    def sealed(self) -> bool:
        return self.state.unsealer is not None and not self.state.opened

    def progress(self) -> Progress | None:
        u = self.state.unsealer
        return u.status() if u is not None and not self.state.opened else None

    def refusal(self) -> str:
        """What every other call is told while sealed: ``sealed: 0 of 2 shares entered; run `hsmsvc unseal```.
        Lock-free (:meth:`Unsealer.snapshot`): it runs on the event loop and the metrics thread."""
        u = self.state.unsealer
        return f"{u.snapshot().summary()}; {HINT}" if u is not None else "sealed"

    @rpc("CeremonyService.GetSealStatus")
    def GetSealStatus(self, r: m.GetSealStatusRequest, c: Caller) -> m.GetSealStatusResponse:
        r.ListFields()  # no fields, but an undecodable request is refused here, as everywhere (api/status.py)
        u = self.state.unsealer
        return m.GetSealStatusResponse(status=_status(self.progress(), u.header if u else None, self.sealed))

    @rpc("CeremonyService.SubmitUnsealShare")
    def SubmitUnsealShare(self, r: m.SubmitUnsealShareRequest, c: Caller) -> m.SubmitUnsealShareResponse:
        share = r.share
        u = self.state.unsealer
        if u is None:
            raise KeyStateError("lmk", "not share-sealed: this server's LMK opens without custodians' shares")
        if self.state.opened:
            raise KeyStateError("lmk", "not sealed: the LMK is open")
        try:
            out = u.submit(principal=c.principal.name, share=share)
        except PermissionDenied:
            log.warning("unseal: the shares entered do not open the LMK; entry reset",
                        extra={"principal": c.principal.name, "failures": u.failures})
            raise
        if isinstance(out, Progress):
            log.info("unseal: share entered", extra={"principal": c.principal.name,
                                                      "index": out.entered[-1].index, "entered": len(out.entered),
                                                      "threshold": out.header.threshold})
            return m.SubmitUnsealShareResponse(status=_status(out, out.header, True))
        try:
            self.state.activate(out)
        except BaseException as e:
            out.backend.close()
            u.reset()
            log.warning("unseal: the LMK opened but the server could not start on it; entry reset",
                        extra={"error": type(e).__name__})
            raise
        self.state.opened = True
        return m.SubmitUnsealShareResponse(status=_status(None, out.header, False))

    async def watch(self, every: float = 1.0) -> None:
        """Discard shares whose time is up, while sealed (the next call would too: this wipes them unasked)."""
        u = self.state.unsealer
        while u is not None and not self.state.opened:
            await asyncio.to_thread(u.expire)  # logged there; off the loop, as it takes the unsealer's lock
            await asyncio.sleep(every)

    def handler(self) -> grpc.GenericRpcHandler:
        """The two methods alone, as a generic handler to place before CeremonyService's own."""
        into = GenericHandlersOnly()
        g.add_CeremonyServiceServicer_to_server(self, into)
        return _Only(into.handlers, UNSEAL_METHODS)

    def count(self, metrics: Metrics) -> None:
        """``hsmsvc_sealed`` (1 while sealed), ``hsmsvc_unseal_failures_total`` (wrong combinations) and
        ``hsmsvc_unseal_expiries_total`` (entries discarded for time), since start."""
        metrics.registry.register(_SealMetrics(self))


class _SealMetrics:
    """Read when scraped, from the unsealer's own counts: no share material, no principal."""

    def __init__(self, servicer: UnsealServicer) -> None:
        self._s = servicer

    def collect(self) -> Iterator[Metric]:
        u = self._s.state.unsealer
        yield GaugeMetricFamily("hsmsvc_sealed", "1 while the LMK waits for custodians' shares",
                                value=1.0 if self._s.sealed else 0.0)
        yield CounterMetricFamily("hsmsvc_unseal_failures", "share combinations that did not open the LMK",
                                  value=u.failures if u else 0)
        yield CounterMetricFamily("hsmsvc_unseal_expiries", "entries of shares discarded for taking too long",
                                  value=u.expired if u else 0)


class _Only(grpc.GenericRpcHandler):
    def __init__(self, handlers: list[grpc.GenericRpcHandler], methods: frozenset[str]) -> None:
        self._handlers = handlers
        self._methods = methods

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        if details.method not in self._methods:
            return None
        return next((h for x in self._handlers if (h := x.service(details)) is not None), None)


def _shapes(files: tuple[Any, ...]) -> dict[str, tuple[bool, bool]]:
    """Every hsmsvc method's path and whether it streams requests and responses (from the descriptors)."""
    return {f"/{s.full_name}/{x.name}": (x.client_streaming, x.server_streaming)
            for f in files for s in f.DESCRIPTOR.services_by_name.values() for x in s.methods}


class Gate(grpc.GenericRpcHandler):
    """The server's one generic handler while sealed; the serving :class:`Dispatch` once opened.

    ``sealed`` serves the unseal RPCs, health and reflection; any other hsmsvc
    method gets a handler of its own shape that answers UNAVAILABLE at once (a
    stream is not read first). One attribute read is the whole cost once open.
    """

    def __init__(self, sealed: Dispatch, unseal: UnsealServicer, observed: Observed, files: tuple[Any, ...]) -> None:
        self._open: Dispatch | None = None
        self._sealed = sealed
        self._unseal = unseal
        self._observed = observed
        self._refusals = {path: self._refusal(path, *shape) for path, shape in _shapes(files).items()}

    def open(self, dispatch: Dispatch) -> None:
        self._open = dispatch

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        opened = self._open
        if opened is not None:
            return opened.service(details)
        found = self._sealed.service(details)
        return found if found is not None else self._refusals.get(details.method)

    def _refusal(self, path: str, client_streaming: bool, server_streaming: bool) -> grpc.RpcMethodHandler:
        method = path[1:].replace("/", ".").removeprefix("hsmsvc.v1.")

        async def refuse(context: Any) -> None:
            started = time.perf_counter()
            code, principal = grpc.StatusCode.UNAVAILABLE, "-"
            try:
                principal = self._observed.principal(context).name
                message = self._unseal.refusal()
            except HsmsvcError as e:  # a certificate outside the policy: as an open server would answer
                code, message = grpc.StatusCode.PERMISSION_DENIED, str(e)
            finally:
                elapsed = time.perf_counter() - started
                self._observed.record(method, code.name, elapsed)
                ACCESS.write("rpc", method, principal, code.name, elapsed)
            await context.abort(code, message)

        async def unary(request: Any, context: Any) -> Any:
            await refuse(context)

        async def streaming(request: Any, context: Any) -> Any:
            await refuse(context)
            yield  # not reached: a generator, so grpc treats it as a response stream

        if client_streaming and server_streaming:
            return grpc.stream_stream_rpc_method_handler(streaming)
        if client_streaming:
            return grpc.stream_unary_rpc_method_handler(unary)
        if server_streaming:
            return grpc.unary_stream_rpc_method_handler(streaming)
        return grpc.unary_unary_rpc_method_handler(unary)
