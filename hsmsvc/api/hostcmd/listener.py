"""The host-command listener: TCP (TLS with client certificates; plaintext only under
``insecure_dev``), payShield framing, pipelining, and the same principals, policy, attempt limits
and audit as the gRPC door.

A connection's requests are read as they come and may run at once; their replies are written in
the order the requests came, so an application matching replies by order or by header never
gets another request's reply. At most ``in_flight`` requests of one connection run at a time:
reading pauses until the oldest is answered.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Final

from hsmsvc import errors
from hsmsvc.api.hostcmd import codes
from hsmsvc.api.hostcmd.codes import HostError
from hsmsvc.api.hostcmd.fields import Fields
from hsmsvc.api.hostcmd.frames import END, Frame, reply_code
from hsmsvc.api.hostcmd.registry import COMMANDS, Answer, Command
from hsmsvc.api.hostcmd.settings import Settings
from hsmsvc.api.logs import ACCESS, REQUEST_ID
from hsmsvc.api.runner import InlineState, Lane
from hsmsvc.api.status import Observed, request_id
from hsmsvc.loopguard import WouldBlock
from hsmsvc.service.authz import Policy, Principal
from hsmsvc.service.context import Caller, Services

# Registers every family's commands.
from hsmsvc.api.hostcmd import cards, data, diag, keys, mac, pin  # noqa: F401

__all__ = ["HostListener", "Settings", "tls_context"]

log = logging.getLogger("hsmsvc.hostcmd")
discovery_log = logging.getLogger("hsmsvc.hostcmd.discovery")



def tls_context(*, cert: str, key: str, client_ca: str, optional: bool) -> ssl.SSLContext:
    """TLS 1.2 or later with client certificates from ``client_ca``; ``optional``: a client may
    present none, and is then named by its source network (``Settings.sources``)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=client_ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.verify_mode = ssl.CERT_OPTIONAL if optional else ssl.CERT_REQUIRED
    return ctx


@dataclass
class _Peer:
    """What a grpc context offers identity.principal_resolver, for one TCP connection."""

    pem: bytes
    address: str

    def auth_context(self) -> dict[str, list[bytes]]:
        return {"x509_pem_cert": [self.pem]} if self.pem else {}

    def peer(self) -> str:
        return self.address


class HostListener:
    """Serves host commands for the use cases ``services()`` returns (None while sealed)."""

    def __init__(self, settings: Settings, *, services: Callable[[], Services | None], observed: Observed,
                 policy: Policy, resolve: Callable[[Any], Principal], dev_principal: Principal | None) -> None:
        self.settings = settings
        self._services = services
        self._observed = observed
        self._policy = policy
        self._resolve = resolve
        self._dev = dev_principal
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._readers: dict[asyncio.Task[None], asyncio.StreamReader] = {}
        self._per_source: dict[str, int] = {}
        self._per_principal: dict[str, int] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._tls: ssl.SSLContext | None = None
        self._inline: dict[bytes, InlineState] = {c: InlineState() for c, cmd in COMMANDS.items()
                                                  if cmd.lane is Lane.INLINE}
        self.port = 0

    async def start(self, listen: str, tls: ssl.SSLContext | None, *, reuse_port: bool = False) -> int:
        host, _, port = listen.rpartition(":")
        # TCP first, TLS in the connection's own task (StreamWriter.start_tls): a connection is
        # counted against max_connections from its first byte, and its handshake has
        # _HANDSHAKE seconds, so sockets that never finish one hold no unbounded memory.
        self._tls = tls
        self._server = await asyncio.start_server(self._connection, host.strip("[]") or None, int(port),
                                                  reuse_port=reuse_port or None, limit=2 ** 17)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self, grace: float) -> None:
        """Accept no more connections, read no more requests, answer those read within ``grace``."""
        if self._server is not None:
            self._server.close()
        for reader in self._readers.values():
            reader.feed_eof()
        tasks = [*self._connections, *self._pending]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    # -- one connection -------------------------------------------------------------------

    def _principal(self, writer: asyncio.StreamWriter) -> Principal | errors.PermissionDenied:
        if self._dev is not None:
            return self._dev
        peername = writer.get_extra_info("peername") or ("-", 0)
        address = f"{peername[0]}:{peername[1]}"
        obj = writer.get_extra_info("ssl_object")
        der = obj.getpeercert(binary_form=True) if obj is not None else None
        if der:
            try:
                return self._resolve(_Peer(ssl.DER_cert_to_PEM_cert(der).encode("ascii"), address))
            except errors.PermissionDenied as e:
                return e
        try:
            ip = ipaddress.ip_address(peername[0])
        except ValueError:
            ip = None
        for network, name in self.settings.sources:
            if ip is not None and ip in network:
                try:
                    return self._policy.principal(name)
                except errors.PermissionDenied as e:
                    return e
        return errors.PermissionDenied("certificate", "none presented, and the source is not configured")

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        source = _source((writer.get_extra_info("peername") or ("-",))[0])
        # Until it has a principal a connection is pending: its handshake (5 s at most) and, if
        # refused, its one answer. Pending ones have a budget of their own, and a share of it per
        # network (/24, /64), so sockets that never start TLS or name no principal take no slot of
        # a client that does, and one network cannot keep new clients out (issue 36's fourth and
        # fifth reviews). A connection with a principal counts against max_connections, and
        # against its principal's share, which bounds one certificate's hold on the door.
        if len(self._pending) >= self.settings.pending_limit \
                or self._per_source.get(source, 0) >= self.settings.pending_per_source:
            writer.close()
            return
        self._pending.add(task)
        self._readers[task] = reader
        self._per_source[source] = self._per_source.get(source, 0) + 1
        try:
            if self._tls is not None:
                await writer.start_tls(self._tls, ssl_handshake_timeout=_HANDSHAKE)
        except (OSError, ssl.SSLError, asyncio.TimeoutError, ConnectionError):
            self._left(task, source, writer)
            return
        principal = self._principal(writer)
        if isinstance(principal, Principal):
            if len(self._connections) >= self.settings.max_connections \
                    or self._per_principal.get(principal.name, 0) >= self.settings.principal_limit:
                self._left(task, source, writer)
                return
            self._unpend(task, source)
            self._connections.add(task)
            self._per_principal[principal.name] = self._per_principal.get(principal.name, 0) + 1
        replies: asyncio.Queue[asyncio.Future[bytes]] = asyncio.Queue(self.settings.in_flight)
        sender = asyncio.create_task(self._send(replies, writer))
        framing = self.settings.framing
        idle = self.settings.idle_timeout_seconds or None
        refused = isinstance(principal, errors.PermissionDenied)
        try:
            while not sender.done():
                try:
                    # A refused client gets one answer (17), for its operators to see why, and no
                    # connection slot to keep: else clients outside the policy could hold them all.
                    frame = await asyncio.wait_for(framing.read(reader), _REFUSED_WAIT if refused else idle)
                except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError, ssl.SSLError):
                    break
                if frame is None:
                    break
                await replies.put(self._answer(frame, principal))
                if refused:
                    break
            await replies.put(_DONE)
            await sender
        except asyncio.CancelledError:
            sender.cancel()
            raise
        finally:
            self._left(task, source, writer, principal.name if isinstance(principal, Principal) else None)

    def _left(self, task: asyncio.Task[None], source: str, writer: asyncio.StreamWriter,
              principal: str | None = None) -> None:
        if task in self._pending:
            self._unpend(task, source)
        if task in self._connections and principal is not None:
            _drop(self._per_principal, principal)
        self._connections.discard(task)
        self._readers.pop(task, None)
        writer.close()

    def _unpend(self, task: asyncio.Task[None], source: str) -> None:
        self._pending.discard(task)
        _drop(self._per_source, source)

    async def _send(self, replies: asyncio.Queue[asyncio.Future[bytes]], writer: asyncio.StreamWriter) -> None:
        """Write each reply in its request's order. Past the transport's buffer limit, wait for the
        client to read: a client that sends without reading stalls its own connection (reading
        stops at ``in_flight`` waiting replies), not the server's memory. A connection that cannot
        take a reply is closed; its remaining replies are dropped, so its reader never waits on a
        full queue."""
        broken = False
        while True:
            pending = await replies.get()
            if pending is _DONE:
                return
            if broken:
                pending.cancel()
                continue
            try:
                writer.write(await pending)
                if writer.transport.get_write_buffer_size() > _WRITE_LIMIT or replies.empty():
                    await writer.drain()
            except (ConnectionError, ssl.SSLError):
                broken = True
            except Exception:
                log.exception("host command reply failed: closing the connection")
                broken = True
            if broken:
                writer.close()

    # -- one request ----------------------------------------------------------------------

    def _answer(self, frame: Frame, principal: Principal | errors.PermissionDenied) -> asyncio.Future[bytes]:
        """The reply to ``frame``: done at once when it ran on the loop, else when its use case is."""
        loop = asyncio.get_running_loop()
        rid = request_id(())
        token = REQUEST_ID.set(rid)
        try:
            started = perf_counter()
            cmd = COMMANDS.get(frame.command)
            fields = Fields(frame.payload)
            out = loop.create_future()
            early = self._refusal(frame, cmd, principal)
            if early is not None:
                out.set_result(self._reply(frame, early, b"", cmd, principal, started, fields))
                return out
            assert cmd is not None and isinstance(principal, Principal)
            caller = Caller(principal, cmd.method or f"HostCommand.{_printable(cmd.code)}", rid)
            services = self._services()
            state = self._inline.get(cmd.code)
            runner = self._observed.runner
            if state is not None and runner.first_inline(state):
                try:
                    result = runner.call(state, _run, cmd, services, caller, fields)
                except WouldBlock:
                    fields = Fields(frame.payload)
                else:
                    out.set_result(self._reply(frame, *result, cmd, principal, started, fields))
                    return out
            return asyncio.ensure_future(self._offload(frame, cmd, services, caller, fields, principal, started))
        finally:
            REQUEST_ID.reset(token)

    async def _offload(self, frame: Frame, cmd: Command, services: Services | None, caller: Caller, fields: Fields,
                       principal: Principal, started: float) -> bytes:
        lane = Lane.TRANSACTION if cmd.lane is Lane.INLINE else cmd.lane
        try:
            code, body = await self._observed.runner.offload(lane, _run, cmd, services, caller, fields)
        except errors.HsmsvcError as e:  # refused by the runner itself (overloaded)
            code, body = codes.code_for(e), b""
        return self._reply(frame, code, body, cmd, principal, started, fields)

    def _refusal(self, frame: Frame, cmd: Command | None,
                 principal: Principal | errors.PermissionDenied) -> str | None:
        if len(frame.command) < 2:  # the message ended inside its header or command code
            return codes.INVALID_INPUT
        if cmd is None:
            return codes.DISABLED
        if isinstance(principal, errors.PermissionDenied):
            return codes.NOT_AUTHORIZED
        if cmd.method is not None and not principal.may_call(cmd.method):
            return codes.NOT_AUTHORIZED
        if cmd.needs_services and self._services() is None:
            return codes.LMK_UNAVAILABLE
        return None

    def _reply(self, frame: Frame, code: str, body: bytes, cmd: Command | None,
               principal: Principal | errors.PermissionDenied, started: float, fields: Fields) -> bytes:
        # A message shorter than its header is answered with what came of it, space-filled, so the
        # reply keeps the frame the application reads.
        header = frame.header.ljust(self.settings.framing.header_length, b" ")
        released = code in (codes.OK, codes.VERIFICATION_FAILED)
        # A command that read all its fields knows its trailer; a refused one's is guessed.
        trailer = fields.trailer if released else frame.trailer_guess()
        tail = END + trailer if trailer is not None else b""
        if released and len(header) + 4 + len(body) + len(tail) > _MAX_FRAME:
            code, body = codes.DATA_LENGTH, b""  # a reply the two-byte length cannot count
        name = f"HostCommand.{_printable(frame.command)}"
        elapsed = perf_counter() - started
        self._observed.record(name, code, elapsed)
        ACCESS.write("host", name, principal.name if isinstance(principal, Principal) else "-", code, elapsed)
        if self.settings.discovery:
            discovery_log.info("host command", extra={
                "command": _printable(frame.command), "known": cmd is not None, "payload_length": len(frame.payload),
                "fields": [f"{n}:{k}" for n, k in fields.seen], "trailer": trailer is not None, "code": code})
        fields_out = body if code in (codes.OK, codes.VERIFICATION_FAILED) else b""
        return self.settings.framing.encode(header, reply_code(frame.command) + code.encode("ascii") + fields_out
                                            + tail)


_DONE: Final[Any] = object()
_MAX_FRAME: Final = 0xFFFF
_HANDSHAKE: Final = 5.0
"""Seconds a client has to complete its TLS handshake."""
_REFUSED_WAIT: Final = 5.0
"""Seconds a refused client has to send the one request it is answered (17) before it is closed."""
_WRITE_LIMIT: Final = 256 * 1024
"""Bytes of replies waiting in one connection's transport before the sender waits for the client."""


def _drop(counts: dict[str, int], name: str) -> None:
    n = counts.get(name, 1) - 1
    if n > 0:
        counts[name] = n
    else:
        counts.pop(name, None)


def _source(address: str) -> str:
    """What the pending share counts by: an IPv4 /24 or an IPv6 /64, so one host with many
    addresses is still one source (an IPv4-mapped address is its IPv4 one)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ipaddress.ip_network(f"{ip}/{24 if ip.version == 4 else 64}", strict=False))


def _printable(command: bytes) -> str:
    return command.decode("ascii") if command.isascii() and command.isalnum() else "??"


def _run(cmd: Command, services: Services | None, caller: Caller, fields: Fields) -> tuple[str, bytes]:
    """The command's handler, its outcome as (code, reply fields); never raises but WouldBlock."""
    try:
        out = cmd.handler(services, caller, fields)  # type: ignore[arg-type]
    except HostError as e:
        log.debug("host command refused", extra={"command": _printable(cmd.code), "code": e.code, "field": e.field})
        return e.code, b""
    except errors.HsmsvcError as e:
        # Its text names the field and the rule, never a value (hsmsvc/errors.py).
        code = codes.code_for(e, cmd.destinations)
        log.debug("host command refused", extra={"command": _printable(cmd.code), "code": code, "reason": str(e)})
        return code, b""
    except WouldBlock:
        raise
    except Exception:
        log.exception("unhandled error in host command", extra={"command": _printable(cmd.code)})
        return codes.INTERNAL, b""
    if isinstance(out, Answer):
        return out.code, out.fields
    return codes.OK, out
