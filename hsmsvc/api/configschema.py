"""What ``hsmsvc.toml`` may hold: one msgspec Struct per table, unknown keys refused.

Types here are the file's, checked strictly (``workers = "4"`` is refused, as is a quoted
``"false"``); the rules between values (ranges, which backend needs what, insecure-dev's
limits) are :mod:`hsmsvc.api.config`'s, which builds the frozen dataclasses the server uses.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

__all__ = ["ENV", "LOG_LEVELS", "PATHS", "Attempts", "Backend", "File", "HostCommands", "KeySync", "Member", "Peer",
           "Pin", "Rotation", "Tls"]

LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Environment variables that override a top-level setting, and the type each value is read as.
ENV: Final[dict[str, tuple[str, type]]] = {
    "HSMSVC_LISTEN": ("listen", str),
    "HSMSVC_METRICS_LISTEN": ("metrics_listen", str),
    "HSMSVC_STORE": ("store", str),
    "HSMSVC_POLICY": ("policy", str),
    "HSMSVC_LOG_LEVEL": ("log_level", str),
    "HSMSVC_WORKERS": ("workers", int),
    "HSMSVC_AUDIT_CHECKPOINTS": ("audit_checkpoints", str),
    "HSMSVC_AUTO_MIGRATE": ("auto_migrate", bool),
}

# Settings that name a file: in the config file, relative to the file's directory.
PATHS: Final = ("policy", "audit_checkpoints", "tls.cert", "tls.key", "tls.client_ca", "backend.sealed_lmk",
                "backend.passphrase_file", "backend.pin_file", "backend.module")


class Tls(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    cert: str
    key: str
    client_ca: str


class Member(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A soft or pkcs11 backend: ``[backend]`` itself, or one of a pool's ``[[backend.members]]``."""

    kind: str = "soft"
    sealed_lmk: str | None = None
    passphrase_env: str | None = None
    passphrase_file: str | None = None
    passphrase_fd: int | None = None
    passphrase_credential: str | None = None
    module: str | None = None
    token_label: str | None = None
    pin_env: str | None = None
    pin_file: str | None = None
    pin_fd: int | None = None
    pin_credential: str | None = None


class Backend(Member, forbid_unknown_fields=True, frozen=True):
    """``[backend]``: a member's keys for a single backend, or ``kind = "pool"`` and its members."""

    members: list[Member] = []
    health_interval: float = 2.0
    call_timeout: float = 10.0

    def member(self) -> Member:
        """This table as the one backend it describes (not a pool)."""
        fields = {f: getattr(self, f) for f in Member.__struct_fields__}
        return Member(**fields)


class Attempts(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    per_pan: int = 3
    per_principal: int = 500
    window_seconds: int = 86400


class Pin(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    allow_aes_to_tdes_translation: bool = True


class Crypto(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    national_only: bool = False


class KeySync(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    activate_after_seconds: float = 30
    grace_seconds: float = 300
    notice_max_age_seconds: float = 3600
    rotation_margin_seconds: float = 5


class Rotation(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    max_age_seconds: int = 0
    max_uses: int = 0
    peak_uses_per_second: float = 0


class Peer(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    address: str
    server_name: str = ""


class HostCommands(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``[hostcommands]``: the payShield-style host-command listener (``docs/host-commands.md``)."""

    listen: str = "127.0.0.1:1500"
    header_length: int = 4
    length_counts_header: bool = True
    discovery: bool = False
    in_flight: int = 64
    max_connections: int = 1024
    max_connections_per_principal: int = 0
    idle_timeout_seconds: float = 0.0
    sources: dict[str, str] = {}


class File(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The whole file; every setting optional (``tls`` and ``policy`` are required by a rule, not a type)."""

    listen: str = "127.0.0.1:8443"
    metrics_listen: str = "127.0.0.1:9464"
    store: str = "sqlite:///.hsmsvc/keys.db"
    policy: str | None = None
    tls: Tls | None = None
    insecure_dev: bool = False
    dev_principal: str = "dev"
    shutdown_grace_seconds: float = 10.0
    log_level: str = "INFO"
    auto_migrate: bool | None = None
    workers: int = 1
    reuse_port: bool = False
    executor_threads: int = 8
    transaction_threads: int = 0
    executor_queue: int = 256
    audit_checkpoints: str | None = None
    unseal_timeout_seconds: float = 600.0
    backend: Backend = msgspec.field(default_factory=Backend)
    attempts: Attempts = msgspec.field(default_factory=Attempts)
    pin: Pin = msgspec.field(default_factory=Pin)
    crypto: Crypto = msgspec.field(default_factory=Crypto)
    key_sync: KeySync = msgspec.field(default_factory=KeySync)
    hostcommands: HostCommands | None = None
    # Tables named by the user (a key type, a zone): each is decoded on its own, so an error can name it.
    rotation: dict[str, Any] = {}
    peers: dict[str, Any] = {}
