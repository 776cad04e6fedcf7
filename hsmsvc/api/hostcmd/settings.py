"""``[hostcommands]``: the host-command listener's settings, checked."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from hsmsvc.api.hostcmd.frames import Framing
from hsmsvc.errors import InvalidInput

__all__ = ["Network", "Settings"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Settings:
    listen: str = "127.0.0.1:1500"
    framing: Framing = Framing()
    discovery: bool = False
    """Log each command's code and its fields' names and lengths (never their values)."""
    in_flight: int = 64
    """Requests of one connection running at once; reading pauses past it."""
    max_connections: int = 1024
    max_connections_per_source: int = 256
    """Connections from one address, handshakes included: one host cannot take every slot."""
    idle_timeout_seconds: float = 0.0
    """Close a connection silent this long (0: never)."""
    sources: tuple[tuple[Network, str], ...] = ()
    """Networks whose connections without a client certificate act as the named principal."""

    def __post_init__(self) -> None:
        if not 1 <= self.in_flight <= 1024:
            raise InvalidInput("hostcommands.in_flight", "1 to 1024")
        if not 1 <= self.max_connections <= 65536:
            raise InvalidInput("hostcommands.max_connections", "1 to 65536")
        if not 1 <= self.max_connections_per_source <= self.max_connections:
            raise InvalidInput("hostcommands.max_connections_per_source", "1 to max_connections")
        if not 0 <= self.idle_timeout_seconds <= 86400:
            raise InvalidInput("hostcommands.idle_timeout_seconds", "0 to 86400")

    @staticmethod
    def networks(table: dict[str, str]) -> tuple[tuple[Network, str], ...]:
        out = []
        for cidr, name in table.items():
            try:
                net = ipaddress.ip_network(cidr, strict=True)
            except ValueError:
                raise InvalidInput(f"hostcommands.sources.{cidr}", "a network such as 10.1.0.0/16") from None
            if not name:
                raise InvalidInput(f"hostcommands.sources.{cidr}", "a principal's name")
            out.append((net, name))
        # Most specific first: a host's own entry wins over its network's.
        return tuple(sorted(out, key=lambda e: -e[0].prefixlen))
