"""Assemble and run the gRPC server (grpc.aio).

asyncio was chosen by measurement: it handled nearly twice the unary calls of
the thread-pool server (``docs/platform-notes.md``). Use cases that may wait run on a bounded executor;
the hot path's short ones try the event loop first (``api/runner.py``). The
health monitor's probes run off the loop too (``api/monitor.py``).

Shutdown order on SIGTERM or SIGINT: health goes NOT_SERVING, in-flight calls
drain for the grace period, then the backend closes (PKCS#11 logout) and the
database engine is disposed.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from hsmsvc.api.ceremony import CeremonyServicer
from hsmsvc.api.config import ServerConfig
from hsmsvc.api.data import DataServicer
from hsmsvc.api.guarded import GuardedHealth, GuardedReflection
from hsmsvc.api.hostcmd.listener import HostListener, tls_context
from hsmsvc.api.identity import principal_resolver
from hsmsvc.api.keys import KeyServicer
from hsmsvc.api.signatures import CoSigningServicer, SignatureServicer
from hsmsvc.api.keysync import KeySyncServicer, PeerCourier
from hsmsvc.api.logs import ACCESS, release_stderr
from hsmsvc.api.cards import CardServicer
from hsmsvc.api.mac import MacServicer
from hsmsvc.api.terminal import TerminalServicer
from hsmsvc.api.metrics import BEAT, Metrics
from hsmsvc.api.monitor import Monitor
from hsmsvc.api.pin import PinServicer
from hsmsvc.api.runner import Lane, Runner
from hsmsvc.api.serverstatus import StatusServicer
from hsmsvc.api.status import Dispatch, GenericHandlersOnly, Observed
from hsmsvc.api.unseal import Gate, UnsealServicer, audit_event, share_sealed
from hsmsvc.errors import InvalidInput, unreadable
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.config import Pkcs11Config, build
from hsmsvc.hsm.soft import sharesealed
from hsmsvc.hsm.soft.unsealing import Opened, Unsealer
from hsmsvc.keys.store import KeyStore
from hsmsvc.service.authz import Policy, Principal, Role
from hsmsvc.service.context import Services
from hsmsvc.service.usage import UseMeter
from hsmsvc_client.v1 import ceremony_service_pb2, ceremony_service_pb2_grpc
from hsmsvc_client.v1 import data_service_pb2, data_service_pb2_grpc, key_service_pb2, key_service_pb2_grpc
from hsmsvc_client.v1 import key_sync_service_pb2, key_sync_service_pb2_grpc
from hsmsvc_client.v1 import mac_service_pb2, mac_service_pb2_grpc, pin_service_pb2, pin_service_pb2_grpc
from hsmsvc_client.v1 import card_service_pb2, card_service_pb2_grpc
from hsmsvc_client.v1 import terminal_service_pb2, terminal_service_pb2_grpc
from hsmsvc_client.v1 import signature_service_pb2, signature_service_pb2_grpc
from hsmsvc_client.v1 import status_service_pb2, status_service_pb2_grpc

__all__ = ["Running", "SERVICE_NAMES", "open_backend", "start", "serve"]

log = logging.getLogger("hsmsvc.server")

SERVICE_NAMES = tuple(
    d.services_by_name[n].full_name
    for d, n in (
        (key_service_pb2.DESCRIPTOR, "KeyService"),
        (pin_service_pb2.DESCRIPTOR, "PinService"),
        (mac_service_pb2.DESCRIPTOR, "MacService"),
        (data_service_pb2.DESCRIPTOR, "DataService"),
        (key_sync_service_pb2.DESCRIPTOR, "KeySyncService"),
        (ceremony_service_pb2.DESCRIPTOR, "CeremonyService"),
        (status_service_pb2.DESCRIPTOR, "StatusService"),
        (signature_service_pb2.DESCRIPTOR, "SignatureService"),
        (signature_service_pb2.DESCRIPTOR, "CoSigningService"),
        (card_service_pb2.DESCRIPTOR, "CardService"),
        (terminal_service_pb2.DESCRIPTOR, "TerminalService"),
    )
)
_MAX_MESSAGE = 16 * 1024 * 1024
_PROTO_FILES = (key_service_pb2, pin_service_pb2, mac_service_pb2, data_service_pb2, key_sync_service_pb2,
                ceremony_service_pb2, status_service_pb2, signature_service_pb2, card_service_pb2, terminal_service_pb2)


def open_backend(config: ServerConfig, forget: bool = True) -> Backend:
    """The configured backend. ``forget``: drop a secret's environment variable once read (a
    supervisor of several workers keeps it for the workers it starts and restarts)."""
    b = config.backend
    if b.kind == "pool":
        from hsmsvc.hsm.pool import Pool

        return Pool(list(b.members), health_interval=b.health_interval, call_timeout=b.call_timeout)
    # A pool's members read their secrets themselves: its parent keeps them to restart members.
    return build(b.members[0], forget)


def _dev_policy(name: str) -> Policy:
    # Development only: one principal with every duty, so the loader's separations do not apply. It may
    # give every share of a share-sealed LMK (api/unseal.py): plaintext on loopback is no dual control.
    roles = frozenset({Role.MANAGER, Role.OPERATOR, Role.ISSUER, Role.REENCRYPTOR, Role.CUSTODIAN})
    return Policy({name: Principal(name, roles, ("*",))})


@dataclass
class Running:
    """A started server and what it owns; ``stop()`` drains and closes in order.

    On a share-sealed LMK the server starts sealed: ``services`` and ``meter`` are None
    until custodians open it (``api/unseal.py``).
    """

    server: grpc.aio.Server
    port: int
    metrics_port: int | None
    health: health.aio.HealthServicer
    services: Services | None
    metrics: Metrics
    config: ServerConfig
    runner: Runner
    meter: UseMeter | None = None
    observed: Observed | None = None
    host: HostListener | None = None
    """The host-command listener (``[hostcommands]``), if configured."""
    _monitor: asyncio.Task[None] | None = None
    _beat: asyncio.Task[None] | None = None
    _watch: asyncio.Task[None] | None = None
    stuck: int = 0
    """Use cases still running on the executor when stop() returned."""

    async def stop(self) -> None:
        if self.observed is not None:  # a call cut at the grace's end is logged as its client saw it
            self.observed.cut_at = time.monotonic() + self.config.shutdown_grace_seconds
        await self.health.enter_graceful_shutdown()
        grace = self.config.shutdown_grace_seconds
        if self.host is not None:
            await asyncio.gather(self.server.stop(grace), self.host.stop(grace))
        else:
            await self.server.stop(grace)
        for task in (self._monitor, self._watch):
            if task is not None:
                task.cancel()  # and wait, so no probe starts on a closed store or backend
                await asyncio.gather(task, return_exceptions=True)
        if self._beat is not None:
            self._beat.cancel()
        self.stuck = await asyncio.to_thread(self.runner.close)
        if self.stuck:
            log.warning("calls still running past the grace period", extra={"calls": self.stuck})
        if self.meter is not None:
            self.meter.close()
        self.metrics.close()
        if self.services is not None:
            self.services.store.close()
            self.services.backend.close()
        ACCESS.flush()
        log.info("stopped")


async def _beat(metrics: Metrics) -> None:
    """The event loop's heartbeat, read by /healthz and /readyz on the metrics thread."""
    while True:
        metrics.heartbeat = time.monotonic()
        await asyncio.sleep(BEAT)


def _principals(config: ServerConfig) -> tuple[Policy, Callable[[Any], Principal]]:
    if config.insecure_dev:  # never with a policy: config.py refuses one
        policy = _dev_policy(config.dev_principal)
        principal = policy.principal(config.dev_principal)

        def dev_resolve(_: Any) -> Principal:
            return principal
        return policy, dev_resolve
    policy = Policy.load(str(config.policy))
    return policy, principal_resolver(policy)


@dataclass
class _Serving:
    """What an open LMK makes: the store, the use cases and the handlers that serve them."""

    services: Services
    meter: UseMeter
    dispatch: Dispatch


def _serving(config: ServerConfig, backend: Backend, *, policy: Policy, observed: Observed, metrics: Metrics,
             first: grpc.GenericRpcHandler, health_servicer: GuardedHealth,
             reflection_servicer: GuardedReflection) -> _Serving:
    """Open the store on ``backend``, build the use cases and every service's handlers; ``first``
    (the unseal RPCs) is looked up before the services."""
    store = KeyStore(config.store, backend,
                     checkpoints=Path(config.audit_checkpoints) if config.audit_checkpoints else None)
    try:
        if config.auto_migrate:
            store.migrate()
        elif not store.check_schema():
            log.warning("store: schema is a later version's: running on it (a rolling upgrade)")
        courier = PeerCourier(config.peers, config.tls) if config.peers else None
        meter = UseMeter(config.key_sync, courier)
        services = Services(store, backend, policy, config.attempts, meter, config.pin, config.crypto)
    except BaseException:
        store.close()
        raise
    meter.attach(services)
    metrics.count_key_uses(meter.uses)
    metrics.count_audit_failures(store.chain.failures)
    into: Any = GenericHandlersOnly()
    into.handlers.append(first)
    # Services are first looked up in this order, so the per-transaction ones come first.
    pin_service_pb2_grpc.add_PinServiceServicer_to_server(PinServicer(services, observed), into)
    mac_service_pb2_grpc.add_MacServiceServicer_to_server(MacServicer(services, observed), into)
    data_service_pb2_grpc.add_DataServiceServicer_to_server(DataServicer(services, observed), into)
    card_service_pb2_grpc.add_CardServiceServicer_to_server(CardServicer(services, observed), into)
    terminal_service_pb2_grpc.add_TerminalServiceServicer_to_server(TerminalServicer(services, observed), into)
    key_service_pb2_grpc.add_KeyServiceServicer_to_server(KeyServicer(services, observed, config.key_sync), into)
    key_sync_service_pb2_grpc.add_KeySyncServiceServicer_to_server(
        KeySyncServicer(services, observed, config.key_sync, courier), into)
    ceremony_service_pb2_grpc.add_CeremonyServiceServicer_to_server(CeremonyServicer(services, observed), into)
    signature_service_pb2_grpc.add_SignatureServiceServicer_to_server(SignatureServicer(services, observed), into)
    signature_service_pb2_grpc.add_CoSigningServiceServicer_to_server(CoSigningServicer(services, observed), into)
    status_service_pb2_grpc.add_StatusServiceServicer_to_server(StatusServicer(
        services, observed, backend_kind=config.backend.kind,
        member_kinds=tuple("pkcs11" if isinstance(b, Pkcs11Config) else "soft" for b in config.backend.members)),
        into)
    _probes(into, health_servicer, reflection_servicer)
    return _Serving(services, meter, Dispatch(into.handlers))


def _probes(into: Any, health_servicer: GuardedHealth, reflection_servicer: GuardedReflection) -> None:
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, into)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(reflection_servicer, into)


def _tls(config: ServerConfig) -> grpc.ServerCredentials | None:
    """The mTLS credentials, read before anything is opened: an unreadable file is one line naming it."""
    if config.insecure_dev:
        return None
    assert config.tls is not None
    files = {}
    for name in ("key", "cert", "client_ca"):
        path = getattr(config.tls, name)
        try:
            files[name] = Path(path).read_bytes()
        except OSError as e:
            raise unreadable(f"tls.{name}", path, e) from None
    return grpc.ssl_server_credentials([(files["key"], files["cert"])], root_certificates=files["client_ca"],
                                       require_client_auth=True)


def _bind(server: grpc.aio.Server, config: ServerConfig, creds: grpc.ServerCredentials | None) -> int:
    bind: Callable[[], int]
    if creds is None:
        bind = functools.partial(server.add_insecure_port, config.listen)
    else:
        bind = functools.partial(server.add_secure_port, config.listen, creds)
    # Asked first: a port grpc fails to bind costs a line of grpc's own on stderr, and says less.
    why = bind_failure(config.listen, reuse_port=config.reuse_port)
    if why is not None:
        raise InvalidInput(f"listen {config.listen}", why)
    try:
        port: int = bind()
    except RuntimeError:  # grpc says only "Failed to bind"
        port = 0
    if port == 0:
        raise InvalidInput(f"listen {config.listen}", bind_failure(config.listen) or "cannot bind")
    return port


def bind_failure(address: str, *, reuse_port: bool = False) -> str | None:
    """Why ``host:port`` cannot be bound, asked of the kernel (grpc only says that it failed, in a
    line of its own); None if it can be. Port 0 always can."""
    import socket

    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as grpc binds: TIME_WAIT is no conflict
            if reuse_port:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(infos[0][4])
    except (OSError, ValueError) as e:
        return (getattr(e, "strerror", None) or str(e)).lower()
    return None


async def _host(config: ServerConfig, running: Running, *, policy: Policy, resolve: Callable[[Any], Principal],
                observed: Observed) -> HostListener:
    """Start the host-command listener on the same use cases, policy and limits as the gRPC door."""
    settings = config.hostcommands
    assert settings is not None
    tls = None
    if not config.insecure_dev:
        assert config.tls is not None
        try:
            tls = tls_context(cert=config.tls.cert, key=config.tls.key, client_ca=config.tls.client_ca,
                              optional=bool(settings.sources))
        except OSError as e:
            raise InvalidInput("tls", f"cannot be read ({(e.strerror or type(e).__name__).lower()})") from None
    host = HostListener(settings, services=lambda: running.services, observed=observed, policy=policy,
                        resolve=resolve,
                        dev_principal=policy.principal(config.dev_principal) if config.insecure_dev else None)
    why = bind_failure(settings.listen, reuse_port=config.reuse_port)
    if why is not None:
        raise InvalidInput(f"hostcommands.listen {settings.listen}", why)
    try:
        await host.start(settings.listen, tls, reuse_port=config.reuse_port)
    except OSError as e:
        raise InvalidInput(f"hostcommands.listen {settings.listen}", (e.strerror or str(e)).lower()) from None
    return host


async def _serve_all(running: Running, serving: _Serving, backend: Backend) -> None:
    """Mark every service SERVING and let the health monitor take over (on the event loop)."""
    running.services, running.meter = serving.services, serving.meter
    for n in ("", *SERVICE_NAMES):
        await running.health.set(n, health_pb2.HealthCheckResponse.SERVING)
    # Store and backend health drive gRPC health, /readyz and the gauges (api/monitor.py).
    monitor = Monitor(serving.services.store, backend, running.metrics, running.health, SERVICE_NAMES)
    running.metrics.readiness = lambda: (monitor.current.ready, monitor.current.reason())
    running._monitor = asyncio.create_task(monitor.run())


async def start(config: ServerConfig, backend: Backend | None = None, *,
                mirror: tuple[str, str] | None = None) -> Running:
    """Open backend and store, bind, register services, health and reflection; start serving.

    On a share-sealed LMK (``api/unseal.py``) the port is bound sealed, and backend, store and
    services are opened when custodians' shares open the LMK. ``mirror``: the directory and name
    under which a supervisor's worker writes its metrics (``api/metrics_files.py``).
    """
    creds = _tls(config)
    sealed_lmk = share_sealed(config) if backend is None else None
    unsealer = None
    if sealed_lmk is not None:
        # Before any custodian hands over a share: the header names the LMK's algorithm.
        config.crypto.require_lmk(sharesealed.read_header(sealed_lmk.read_bytes()).algorithm)
        unsealer = Unsealer(sealed_lmk, timeout=config.unseal_timeout_seconds,
                            one_per_principal=not config.insecure_dev)
    else:
        backend = backend or open_backend(config)
    policy, resolve = _principals(config)
    metrics = Metrics(backend=config.backend.kind)
    if mirror is not None:
        metrics.mirror_to(*mirror)
    # Use cases try the event loop first only where the backend is in this process.
    tx_threads = config.transaction_threads or max(2, len(config.backend.members) + 1)
    runner = Runner(config.executor_threads, config.executor_queue, inline=config.backend.kind == "soft",
                    transaction_threads=tx_threads)
    observed = Observed(resolve, metrics.record, runner)
    metrics.count_busy({lane.value: functools.partial(runner.busy, lane) for lane in (Lane.TRANSACTION, Lane.OTHER)})
    health_servicer = GuardedHealth(resolve)
    reflection_servicer = GuardedReflection(
        (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), resolve)
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", _MAX_MESSAGE),
        ("grpc.max_send_message_length", _MAX_MESSAGE),
        ("grpc.so_reuseport", 1 if config.reuse_port else 0),
    ])
    loop = asyncio.get_running_loop()
    running: Running | None = None
    gate: Gate | None = None

    def activate(opened: Opened) -> None:
        # On an executor thread: the store and its migration may wait. The audit row is written
        # before the gate opens, so no call is served under an LMK whose opening is not recorded.
        serving = _serving(config, opened.backend, policy=policy, observed=observed, metrics=metrics,
                           first=unseal_handler, health_servicer=health_servicer,
                           reflection_servicer=reflection_servicer)
        try:
            serving.services.store.audit(audit_event(opened))
            asyncio.run_coroutine_threadsafe(finish(serving, opened.backend), loop).result()
        except BaseException:
            serving.meter.close()
            serving.services.store.close()
            raise
        log.info("unsealed: serving", extra={"lmk_kcv": opened.header.lmk_kcv.hex().upper(),
                                             "custodians": [e.principal for e in opened.entered]})

    async def finish(serving: _Serving, opened: Backend) -> None:
        assert running is not None and gate is not None
        gate.open(serving.dispatch)
        await _serve_all(running, serving, opened)

    unseal = UnsealServicer(observed, unsealer, activate)
    unseal.count(metrics)
    unseal_handler = unseal.handler()
    serving: _Serving | None = None
    if backend is not None:
        serving = _serving(config, backend, policy=policy, observed=observed, metrics=metrics, first=unseal_handler,
                           health_servicer=health_servicer, reflection_servicer=reflection_servicer)
        server.add_generic_rpc_handlers((serving.dispatch,))
    else:
        probes: Any = GenericHandlersOnly()
        probes.handlers.append(unseal_handler)
        _probes(probes, health_servicer, reflection_servicer)
        gate = Gate(Dispatch(probes.handlers), unseal, observed, _PROTO_FILES)
        server.add_generic_rpc_handlers((gate,))
    try:
        port = _bind(server, config, creds)
        await server.start()
        running = Running(server, port, None, health_servicer, None, metrics, config, runner,
                          observed=observed)
        running._beat = asyncio.create_task(_beat(metrics))
        if serving is not None and backend is not None:
            await _serve_all(running, serving, backend)
            lmk_kcv = backend.lmk_kcv().hex().upper()
        else:
            for n in ("", *SERVICE_NAMES):
                await health_servicer.set(n, health_pb2.HealthCheckResponse.NOT_SERVING)
            metrics.readiness = lambda: (False, unseal.refusal().split(";")[0])
            running._watch = asyncio.create_task(unseal.watch())
            lmk_kcv = "sealed"
        if config.hostcommands is not None:
            running.host = await _host(config, running, policy=policy, resolve=resolve, observed=observed)
        if config.metrics_listen:
            try:
                running.metrics_port = metrics.serve(config.metrics_listen)
            except (OSError, ValueError) as e:
                raise InvalidInput(f"metrics_listen {config.metrics_listen}",
                                   (getattr(e, "strerror", None) or str(e)).lower()) from None
    except BaseException:
        # Nothing half-started outlives a refusal (a busy port): no traceback of a loop closed under it.
        await server.stop(0)
        if running is not None and running.host is not None:
            await running.host.stop(0)
        for task in (running._beat, running._watch, running._monitor) if running is not None else ():
            if task is not None:
                task.cancel()
        await asyncio.to_thread(runner.close)
        metrics.close()
        if serving is not None:
            serving.meter.close()
            serving.services.store.close()
        if backend is not None:
            backend.close()
        raise
    if unsealer is not None:
        log.info("sealed: waiting for custodians' shares (hsmsvc unseal)",
                 extra={"port": port, "metrics_port": running.metrics_port, "seal_id": unsealer.header.seal_id,
                        "threshold": unsealer.header.threshold, "shares": unsealer.header.count})
    log.info("serving" if unsealer is None else "listening sealed",
             extra={"port": port, "metrics_port": running.metrics_port,
                    "host_port": running.host.port if running.host is not None else None,
                    "tls": not config.insecure_dev,
                    "lmk_kcv": lmk_kcv, "principals": len(policy)})
    return running


async def serve(config: ServerConfig, ready: Any = None, *, mirror: tuple[str, str] | None = None) -> None:
    """Run until SIGTERM or SIGINT; ``ready(running)`` is called once serving (``mirror``: see :func:`start`)."""
    running = await start(config, mirror=mirror)
    # What start-up made (modules, SQLAlchemy's tables, the policy) lives as long as the
    # process: kept out of the collector, a full collection scans only what serving
    # makes, rather than every start-up object while every call in flight waits.
    gc.collect()
    gc.freeze()
    if ready is not None:
        ready(running)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("draining", extra={"grace_seconds": config.shutdown_grace_seconds})
    await running.stop()
    if running.stuck:
        # Their clients were answered when the grace ended; the interpreter would wait for
        # their threads at exit, as long as the dependency they wait on.
        logging.shutdown()
        release_stderr()
        os._exit(0)
