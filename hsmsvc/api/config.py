"""Server configuration: a TOML file, then ``HSMSVC_*`` environment overrides.

.. code-block:: toml

    listen = "127.0.0.1:8443"
    metrics_listen = "127.0.0.1:9464"       # "" turns the metrics endpoint off
    store = "sqlite:///.hsmsvc/keys.db"
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
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Mapping

from hsmsvc.errors import InvalidInput
from hsmsvc.hsm.config import Pkcs11Config, SecretSource, SoftConfig
from hsmsvc.service.context import AttemptLimits, PinPolicy
from hsmsvc.service.keysync import DEFAULT_ROTATION, Rotation, SyncSettings
from hsmsvc.service.rotation import check_settings
from hsmsvc.types import KeyType

__all__ = ["BackendConfig", "ServerConfig", "TlsConfig", "is_loopback", "load"]


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


_ENV: Final = {
    "HSMSVC_LISTEN": "listen",
    "HSMSVC_METRICS_LISTEN": "metrics_listen",
    "HSMSVC_STORE": "store",
    "HSMSVC_POLICY": "policy",
    "HSMSVC_LOG_LEVEL": "log_level",
    "HSMSVC_WORKERS": "workers",
    "HSMSVC_AUDIT_CHECKPOINTS": "audit_checkpoints",
}


def _secret(d: Mapping[str, Any], name: str) -> SecretSource:
    return SecretSource(env=d.get(f"{name}_env"), file=d.get(f"{name}_file"), fd=d.get(f"{name}_fd"),
                        credential=d.get(f"{name}_credential"))


def _passphrase(d: Mapping[str, Any]) -> SecretSource | None:
    """None when no passphrase source is named: a share-sealed LMK needs none (api/unseal.py checks which)."""
    if all(d.get(f"passphrase_{k}") is None for k in ("env", "file", "fd", "credential")):
        return None
    return _secret(d, "passphrase")


def _member(d: Mapping[str, Any]) -> SoftConfig | Pkcs11Config:
    kind = d.get("kind", "soft")
    if kind == "soft":
        if "sealed_lmk" not in d:
            raise InvalidInput("backend.sealed_lmk", "required for the soft backend")
        return SoftConfig(str(d["sealed_lmk"]), _passphrase(d))
    if kind == "pkcs11":
        for k in ("module", "token_label"):
            if k not in d:
                raise InvalidInput(f"backend.{k}", "required for the pkcs11 backend")
        return Pkcs11Config(str(d["module"]), str(d["token_label"]), _secret(d, "pin"))
    raise InvalidInput("backend.kind", "soft, pkcs11 or pool")


def _backend(d: Mapping[str, Any]) -> BackendConfig:
    kind = d.get("kind", "soft")
    if kind == "pool":
        members = tuple(_member(m) for m in d.get("members", []))
        if not members:
            raise InvalidInput("backend.members", "at least one member")
        call_timeout = float(d.get("call_timeout", 10.0))
        if not 0 < call_timeout < math.inf:
            raise InvalidInput("backend.call_timeout", "a positive number of seconds")
        return BackendConfig("pool", members, float(d.get("health_interval", 2.0)), call_timeout)
    return BackendConfig(kind, (_member(d),))


def _key_sync(d: Mapping[str, Any], rotation: Mapping[str, Any]) -> SyncSettings:
    """``[key_sync]`` times in seconds; ``[rotation.<KEY TYPE>]`` max_age_seconds and max_uses (0: none),
    and optionally peak_uses_per_second. Settings no replacement could keep up with are refused here,
    at start-up (``service/rotation.py: check_settings``)."""
    rot = dict(DEFAULT_ROTATION)
    for name, r in rotation.items():
        age, uses = int(r.get("max_age_seconds", 0)), int(r.get("max_uses", 0))
        peak = float(r.get("peak_uses_per_second", 0))
        rot[KeyType(name)] = Rotation(timedelta(seconds=age) if age else None, uses or None, peak or None)
    settings = SyncSettings(
        activate_after=timedelta(seconds=float(d.get("activate_after_seconds", 30))),
        grace=timedelta(seconds=float(d.get("grace_seconds", 300))),
        notice_max_age=timedelta(seconds=float(d.get("notice_max_age_seconds", 3600))),
        rotation_margin=timedelta(seconds=float(d.get("rotation_margin_seconds", 5))),
        rotation=rot,
    )
    check_settings(settings)
    return settings


def _pin(d: Mapping[str, Any]) -> PinPolicy:
    """``[pin]``; a switch must be a TOML boolean, so a quoted "false" is not taken as true."""
    unknown = set(d) - {"allow_aes_to_tdes_translation"}
    if unknown:
        raise InvalidInput("pin", f"unknown setting {sorted(unknown)[0]}")
    allow = d.get("allow_aes_to_tdes_translation", True)
    if not isinstance(allow, bool):
        raise InvalidInput("pin.allow_aes_to_tdes_translation", "true or false")
    return PinPolicy(allow_aes_to_tdes_translation=allow)


def load(path: str | None, overrides: Mapping[str, Any] | None = None,
         environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Read ``path`` (optional), apply ``HSMSVC_*`` variables, then explicit overrides."""
    doc: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as f:
                doc = tomllib.load(f)
        except OSError:
            raise InvalidInput("config", "file cannot be read") from None
        except tomllib.TOMLDecodeError as e:
            raise InvalidInput("config", f"not valid TOML ({e})") from None
        base = Path(path).parent
        # Relative paths in the file are relative to the file.
        for section, keys in (("tls", ("cert", "key", "client_ca")), ("", ("policy",))):
            target = doc.get(section, {}) if section else doc
            for k in keys:
                if isinstance(target.get(k), str) and not os.path.isabs(target[k]):
                    target[k] = str(base / target[k])
    env = os.environ if environ is None else environ
    for var, key in _ENV.items():
        if env.get(var):
            doc[key] = env[var]
    if env.get("HSMSVC_INSECURE_DEV") in ("1", "true", "yes"):
        doc["insecure_dev"] = True
    doc.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        tls = doc.get("tls")
        a = doc.get("attempts", {})
        limits = AttemptLimits(
            int(a.get("per_pan", 3)), int(a.get("per_principal", 500)),
            timedelta(seconds=int(a.get("window_seconds", 86400))),
        )
        cfg = ServerConfig(
            backend=_backend(doc.get("backend", {})),
            store=str(doc.get("store", "sqlite:///.hsmsvc/keys.db")),
            listen=str(doc.get("listen", "127.0.0.1:8443")),
            metrics_listen=str(doc.get("metrics_listen", "127.0.0.1:9464")),
            policy=doc.get("policy"),
            tls=TlsConfig(str(tls["cert"]), str(tls["key"]), str(tls["client_ca"])) if tls else None,
            insecure_dev=bool(doc.get("insecure_dev", False)),
            dev_principal=str(doc.get("dev_principal", "dev")),
            shutdown_grace_seconds=float(doc.get("shutdown_grace_seconds", 10.0)),
            log_level=str(doc.get("log_level", "INFO")).upper(),
            attempts=limits,
            pin=_pin(doc.get("pin", {})),
            key_sync=_key_sync(doc.get("key_sync", {}), doc.get("rotation", {})),
            workers=int(doc.get("workers", 1)),
            reuse_port=bool(doc.get("reuse_port", False)),
            executor_threads=int(doc.get("executor_threads", 8)),
            audit_checkpoints=str(doc["audit_checkpoints"]) if doc.get("audit_checkpoints") else None,
            transaction_threads=int(doc.get("transaction_threads", 0)),
            executor_queue=int(doc.get("executor_queue", 256)),
            unseal_timeout_seconds=float(doc.get("unseal_timeout_seconds", 600.0)),
            peers={str(z): PeerConfig(str(p["address"]), str(p.get("server_name", "")))
                   for z, p in doc.get("peers", {}).items()},
        )
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidInput("config", f"malformed ({type(e).__name__}: {e})") from None
    return cfg
