"""Server configuration: a TOML file, then ``HSMSVC_*`` environment overrides, then options.

What was chosen, and why (issue 31):

* One schema, unknown keys refused: the file is decoded onto msgspec Structs declared
  ``forbid_unknown_fields`` (:mod:`hsmsvc.api.configschema`; the policy's are in
  :mod:`hsmsvc.service.authz`), so ``listen_adress`` or ``[backned]`` is an error, never a
  default silently used. Types are strict (``workers = "4"``, a quoted ``"false"`` refused).
* Every error is one line naming where the value came from (the file, ``HSMSVC_X``, ``--x``) and
  the key as TOML spells it: ``hsmsvc.toml: [tls] key: required`` (:mod:`hsmsvc.tomlfile`).
* Every path in the file (``policy``, ``[tls]``, ``sealed_lmk``, ``passphrase_file``, ``pin_file``,
  ``audit_checkpoints``, a pool member's, a PKCS#11 ``module`` given with a directory, a SQLite
  store) is relative to the file's directory; a path from the environment or an option is the
  caller's, relative to the working directory.
* ``auto_migrate`` (default false; true under ``insecure_dev`` unless set): whether ``serve``
  upgrades the store's schema. Off, it refuses a schema behind with ``store: schema at REV,
  expected HEAD: run hsmsvc db upgrade``, and its database role needs no DDL.
* ``hsmsvc config check FILE`` and ``hsmsvc policy check FILE`` run the same loading without
  secrets; deploy/hsmsvc.toml and deploy/policy.toml are complete, commented examples.

.. code-block:: toml

    listen = "127.0.0.1:8443"
    metrics_listen = "127.0.0.1:9464"       # "" turns the metrics endpoint off
    store = "sqlite:///.hsmsvc/keys.db"
    auto_migrate = false                      # true: serve upgrades the schema (HSMSVC_AUTO_MIGRATE)
    policy = "policy.toml"
    insecure_dev = false                      # plaintext, one principal: development only
    workers = 1                               # server processes sharing the port (SO_REUSEPORT)
    shutdown_grace_seconds = 10
    unseal_timeout_seconds = 600              # a share-sealed LMK: shares entered expire after this

    [tls]
    cert = "server.pem"
    key = "server.key"
    client_ca = "clients-ca.pem"

    [backend]
    kind = "soft"                             # soft | pkcs11 | pool
    sealed_lmk = ".hsmsvc/lmk.sealed"
    passphrase_credential = "lmk-passphrase"  # or passphrase_file, passphrase_fd, passphrase_env;
                                              # none for a share-sealed LMK (custodians: hsmsvc unseal)

    [attempts]
    per_pan = 3
    per_principal = 500
    window_seconds = 86400

    [pin]
    allow_aes_to_tdes_translation = true      # format 4 (AES) to 0/1/3 (TDES); false forbids the downgrade

    [crypto]
    national_only = false                     # true: SM2/SM3/SM4 only, on an SM4 LMK (GB/T 39786)

    [hostcommands]                            # the payShield-style door (docs/host-commands.md)
    listen = "127.0.0.1:1500"                 # TLS with [tls]'s certificate and client CA
    header_length = 4                         # echoed back
    length_counts_header = true               # false: the length counts command and payload only
    discovery = false                         # log command codes and field lengths, never values
    max_connections_per_principal = 0         # 0: min(256, max_connections)
    [hostcommands.sources]                    # no client certificate: principal by source network
    "10.20.0.0/16" = "core-banking"

A pool lists its members as ``[[backend.members]]`` tables of kind soft or
pkcs11 (``module``, ``token_label``, ``pin_env`` or ``pin_file``); ``[backend]``
``health_interval`` (2 s) and ``call_timeout`` (10 s: a member that has not
answered by then is killed and replaced, and the call goes to another). Secrets are
never in the file: it names the systemd credential (``$CREDENTIALS_DIRECTORY/<name>``),
file, inherited file descriptor (one worker, no pool: it is read once) or environment
variable (removed from the environment once read) that holds them.
"""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final, Mapping

from hsmsvc import tomlfile
from hsmsvc.api import configschema as schema
from hsmsvc.errors import InvalidInput
from hsmsvc.api.hostcmd.frames import Framing
from hsmsvc.api.hostcmd.settings import Settings as HostSettings
from hsmsvc.hsm.config import Pkcs11Config, SecretSource, SoftConfig
from hsmsvc.keys.national import CryptoMode
from hsmsvc.service.context import AttemptLimits, PinPolicy
from hsmsvc.service.keysync import DEFAULT_ROTATION, Rotation, SyncSettings
from hsmsvc.service.rotation import check_settings
from hsmsvc.types import KeyType

__all__ = ["BackendConfig", "ServerConfig", "TlsConfig", "is_loopback", "load", "resolve_paths"]


@dataclass(frozen=True)
class TlsConfig:
    cert: str
    key: str
    client_ca: str


@dataclass(frozen=True)
class BackendConfig:
    kind: str
    members: tuple[SoftConfig | Pkcs11Config, ...]
    health_interval: float = 2.0
    call_timeout: float = 10.0  # a pool member silent this long is killed and replaced


@dataclass(frozen=True)
class PeerConfig:
    """The hsmsvc of a zone's other site, for delivering key-change notices."""

    address: str
    server_name: str = ""


@dataclass(frozen=True)
class ServerConfig:
    backend: BackendConfig
    store: str
    listen: str = "127.0.0.1:8443"
    metrics_listen: str = "127.0.0.1:9464"
    policy: str | None = None
    tls: TlsConfig | None = None
    insecure_dev: bool = False
    dev_principal: str = "dev"
    shutdown_grace_seconds: float = 10.0
    log_level: str = "INFO"
    attempts: AttemptLimits = field(default_factory=AttemptLimits)
    pin: PinPolicy = field(default_factory=PinPolicy)
    """``[pin]``: PinPolicy's switches (service/context.py says why each defaults as it does)."""
    crypto: CryptoMode = field(default_factory=CryptoMode)
    """``[crypto]``: the national-only mode (keys/national.py)."""
    key_sync: SyncSettings = field(default_factory=SyncSettings)
    peers: Mapping[str, PeerConfig] = field(default_factory=dict)
    workers: int = 1
    """Server processes sharing the listening port; one per core is the usual choice."""
    reuse_port: bool = False
    """Bind with SO_REUSEPORT: set for each of several workers."""
    executor_threads: int = 8
    """Threads for key management, key sync, ceremonies and batches (``api/runner.py``)."""
    transaction_threads: int = 0
    """Threads for PIN, MAC and data calls that run off the loop; 0: two, or one more than a pool's
    members. Few, because each competes with the event loop for the GIL (docs/performance.md)."""
    executor_queue: int = 256
    """Calls that may wait for a thread; one more is refused with RESOURCE_EXHAUSTED."""
    audit_checkpoints: str | None = None
    """Append-only file for signed audit checkpoints (keys/checkpoints.py); deploy it ``chattr +a``."""
    unseal_timeout_seconds: float = 600.0
    """A share-sealed LMK: shares entered are discarded this long after the first unless k are in."""
    hostcommands: HostSettings | None = None
    """``[hostcommands]``: the host-command listener, if any (``api/hostcmd``)."""
    auto_migrate: bool = False
    """Bring the store's schema up to date at start; otherwise a schema behind is refused, and the
    serving database role needs no DDL rights (``hsmsvc db upgrade`` is the DBA's step)."""

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= 64:
            raise InvalidInput("workers", "1 to 64")
        # Each thread may hold a store connection (keys/store/engine.py: _POOL).
        if not 1 <= self.executor_threads <= 16:
            raise InvalidInput("executor_threads", "1 to 16")
        if not 0 <= self.transaction_threads <= 16:
            raise InvalidInput("transaction_threads", "0 (two, or a pool's members and one) to 16")
        if not 0 <= self.executor_queue <= 100_000:
            raise InvalidInput("executor_queue", "0 to 100000")
        if not 0 < self.unseal_timeout_seconds <= 86400:
            raise InvalidInput("unseal_timeout_seconds", "more than 0, at most 86400")
        if self.insecure_dev:
            _check_insecure_dev(self)
        if self.hostcommands is not None and self.workers > 1 and self.hostcommands.listen.endswith(":0"):
            raise InvalidInput("hostcommands.listen", "a fixed port with several workers: each binds it (SO_REUSEPORT)")
        if self.workers > 1 or self.backend.kind == "pool":
            for m in self.backend.members:
                source = m.passphrase if isinstance(m, SoftConfig) else m.pin
                if source is not None and source.fd is not None:
                    raise InvalidInput("backend", "a secret from a file descriptor can be read once: "
                                                  "one worker and no pool, or a file or credential")
        if not self.insecure_dev and self.tls is None:
            raise InvalidInput("tls", "required: mTLS, or --insecure-dev for development")
        if not self.insecure_dev and not self.policy:
            raise InvalidInput("policy", "required outside --insecure-dev")


def _check_insecure_dev(cfg: ServerConfig) -> None:
    """Plaintext and one all-powerful principal only for a development config on loopback.

    A config holding ``[tls]`` or a policy is production-shaped: ``HSMSVC_INSECURE_DEV=1`` set by
    mistake must not turn it into a plaintext server that ignores its policy (issue 27).
    """
    if cfg.tls is not None:
        raise InvalidInput("insecure_dev", "refused: the config holds [tls]; remove it or drop --insecure-dev")
    if cfg.policy:
        raise InvalidInput("insecure_dev", "refused: the config names a policy, which insecure-dev would replace")
    if not is_loopback(cfg.listen):
        raise InvalidInput("insecure_dev", "refused: listen must be a loopback address (127.0.0.1, ::1, localhost)")
    if cfg.hostcommands is not None and not is_loopback(cfg.hostcommands.listen):
        raise InvalidInput("insecure_dev", "refused: hostcommands.listen must be a loopback address")


def is_loopback(listen: str) -> bool:
    """Whether ``host:port`` (``[v6]:port`` too) binds a loopback address only."""
    host, sep, _port = listen.rpartition(":")
    if not sep:
        return False
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to anything



_TRUE: Final = ("1", "true", "yes")
_FALSE: Final = ("0", "false", "no")


def load(path: str | None, overrides: Mapping[str, Any] | None = None,
         environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Read ``path`` (optional), apply ``HSMSVC_*`` variables, then explicit overrides (None: not given).

    Every error is a :class:`~hsmsvc.tomlfile.ConfigError`, one line naming where the value came
    from (the file, the variable or the option) and the key.
    """
    source = path or "config"
    doc: dict[str, Any] = {}
    if path:
        doc = tomlfile.read(path)
        resolve_paths(doc, os.path.abspath(os.path.dirname(path)))
    origins: dict[str, str] = {}
    env = os.environ if environ is None else environ
    for var, (key, kind) in schema.ENV.items():
        if env.get(var):
            doc[key], origins[key] = _env_value(var, env[var], kind), var
    if env.get("HSMSVC_INSECURE_DEV") in _TRUE:
        doc["insecure_dev"], origins["insecure_dev"] = True, "HSMSVC_INSECURE_DEV"
    for k, v in (overrides or {}).items():
        if v is not None:
            doc[k], origins[k] = v, "--" + ("sealed" if k == "backend" else k.replace("_", "-"))
    f = tomlfile.decode(doc, schema.File, source=source, origins=origins)
    try:
        return _build(f, source)
    except tomlfile.ConfigError:
        raise
    except InvalidInput as e:
        steps: list[str | int] = list((e.field or "config").split("."))
        raise tomlfile.ConfigError(origins.get(str(steps[0]), source), steps, e.reason) from None


def _env_value(var: str, value: str, kind: type) -> object:
    if kind is int:
        if not value.strip().isdigit():
            raise tomlfile.ConfigError(var, [], "a whole number")
        return int(value)
    if kind is bool:
        if value.lower() not in _TRUE + _FALSE:
            raise tomlfile.ConfigError(var, [], "1, true or yes; 0, false or no")
        return value.lower() in _TRUE
    return value


def resolve_paths(doc: dict[str, Any], base: str) -> None:
    """Paths in the file are relative to the file's directory: the same config means the same files
    from any working directory (a systemd unit's, a shell's). A PKCS#11 module named without a
    directory is left to the library search path; a SQLite store's path is a path too."""
    def fix(table: Any, key: str) -> None:
        if isinstance(table, dict) and isinstance(table.get(key), str) and table[key]:
            v = table[key]
            if key == "module" and "/" not in v:
                return
            if not os.path.isabs(v):
                table[key] = os.path.join(base, v)

    for name in schema.PATHS:
        table, _, key = name.rpartition(".")
        fix(doc.get(table) if table else doc, key)
    backend = doc.get("backend")
    members = backend.get("members") if isinstance(backend, dict) else None
    for m in members if isinstance(members, list) else []:
        for key in ("sealed_lmk", "passphrase_file", "pin_file", "module"):
            fix(m, key)
    store = doc.get("store")
    prefix = "sqlite:///"
    if isinstance(store, str) and store.startswith(prefix):
        rest = store[len(prefix):]
        if rest and not rest.startswith((":memory:", "/")):
            doc["store"] = prefix + os.path.join(base, rest)


def _build(f: schema.File, source: str) -> ServerConfig:
    level = f.log_level.upper()
    if level not in schema.LOG_LEVELS:
        raise InvalidInput("log_level", ", ".join(schema.LOG_LEVELS[:-1]) + " or " + schema.LOG_LEVELS[-1])
    a = f.attempts
    return ServerConfig(
        backend=_backend(f.backend),
        store=f.store,
        listen=f.listen,
        metrics_listen=f.metrics_listen,
        policy=f.policy,
        tls=TlsConfig(f.tls.cert, f.tls.key, f.tls.client_ca) if f.tls else None,
        insecure_dev=f.insecure_dev,
        dev_principal=f.dev_principal,
        shutdown_grace_seconds=f.shutdown_grace_seconds,
        log_level=level,
        auto_migrate=f.insecure_dev if f.auto_migrate is None else f.auto_migrate,
        attempts=AttemptLimits(a.per_pan, a.per_principal, timedelta(seconds=a.window_seconds)),
        pin=PinPolicy(allow_aes_to_tdes_translation=f.pin.allow_aes_to_tdes_translation),
        crypto=CryptoMode(national_only=f.crypto.national_only),
        key_sync=_key_sync(f.key_sync, {name: tomlfile.decode(r, schema.Rotation, source=source, at=["rotation", name])
                                        for name, r in f.rotation.items()}),
        workers=f.workers,
        reuse_port=f.reuse_port,
        executor_threads=f.executor_threads,
        audit_checkpoints=f.audit_checkpoints or None,
        transaction_threads=f.transaction_threads,
        executor_queue=f.executor_queue,
        unseal_timeout_seconds=f.unseal_timeout_seconds,
        hostcommands=_hostcommands(f.hostcommands),
        peers={z: PeerConfig(p.address, p.server_name)
               for z, p in ((z, tomlfile.decode(v, schema.Peer, source=source, at=["peers", z]))
                            for z, v in f.peers.items())},
    )


def _hostcommands(h: schema.HostCommands | None) -> HostSettings | None:
    if h is None:
        return None
    try:
        framing = Framing(h.header_length, h.length_counts_header)
    except ValueError as e:
        raise InvalidInput("hostcommands.header_length", str(e).split(": ", 1)[-1]) from None
    return HostSettings(listen=h.listen, framing=framing, discovery=h.discovery, in_flight=h.in_flight,
                        max_connections=h.max_connections,
                        max_connections_per_principal=h.max_connections_per_principal,
                        idle_timeout_seconds=h.idle_timeout_seconds,
                        sources=HostSettings.networks(h.sources))


def _secret(m: schema.Member, name: str, where: str) -> SecretSource:
    try:
        return SecretSource(env=getattr(m, f"{name}_env"), file=getattr(m, f"{name}_file"),
                            fd=getattr(m, f"{name}_fd"), credential=getattr(m, f"{name}_credential"))
    except InvalidInput as e:
        raise InvalidInput(f"{where}.{name}", f"{name}_env, _file, _fd or _credential: {e.reason}") from None


def _member(m: schema.Member, where: str = "backend") -> SoftConfig | Pkcs11Config:
    if m.kind == "soft":
        if m.sealed_lmk is None:
            raise InvalidInput(f"{where}.sealed_lmk", "required for the soft backend")
        # None when no passphrase source is named: a share-sealed LMK needs none (api/unseal.py checks which).
        named = (m.passphrase_env, m.passphrase_file, m.passphrase_fd, m.passphrase_credential)
        passphrase = None if all(x is None for x in named) else _secret(m, "passphrase", where)
        return SoftConfig(m.sealed_lmk, passphrase)
    if m.kind == "pkcs11":
        if m.module is None:
            raise InvalidInput(f"{where}.module", "required for the pkcs11 backend")
        if m.token_label is None:
            raise InvalidInput(f"{where}.token_label", "required for the pkcs11 backend")
        return Pkcs11Config(m.module, m.token_label, _secret(m, "pin", where))
    raise InvalidInput(f"{where}.kind", "soft, pkcs11 or pool" if where == "backend" else "soft or pkcs11")


def _backend(b: schema.Backend) -> BackendConfig:
    if b.kind == "pool":
        members = tuple(_member(m, "backend.members") for m in b.members)
        if not members:
            raise InvalidInput("backend.members", "at least one member")
        if not 0 < b.call_timeout < math.inf:
            raise InvalidInput("backend.call_timeout", "a positive number of seconds")
        return BackendConfig("pool", members, b.health_interval, b.call_timeout)
    if b.members:
        raise InvalidInput("backend.members", "only for kind = \"pool\"")
    return BackendConfig(b.kind, (_member(b.member()),))


def _key_sync(k: schema.KeySync, rotation: Mapping[str, schema.Rotation]) -> SyncSettings:
    """``[key_sync]`` times in seconds; ``[rotation.<KEY TYPE>]`` max_age_seconds and max_uses (0: none),
    and optionally peak_uses_per_second. Settings no replacement could keep up with are refused here,
    at start-up (``service/rotation.py: check_settings``)."""
    rot = dict(DEFAULT_ROTATION)
    for name, r in rotation.items():
        try:
            kt = KeyType(name)
        except ValueError:
            raise InvalidInput(f"rotation.{name}", "not a key type (ZPK, MAK, ...)") from None
        age, uses, peak = r.max_age_seconds, r.max_uses, r.peak_uses_per_second
        rot[kt] = Rotation(timedelta(seconds=age) if age else None, uses or None, peak or None)
    settings = SyncSettings(
        activate_after=timedelta(seconds=k.activate_after_seconds),
        grace=timedelta(seconds=k.grace_seconds),
        notice_max_age=timedelta(seconds=k.notice_max_age_seconds),
        rotation_margin=timedelta(seconds=k.rotation_margin_seconds),
        rotation=rot,
    )
    check_settings(settings)
    return settings
