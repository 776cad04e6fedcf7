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
    max_connections_per_principal: int = 0
    """Connections of one principal (0: the lesser of 256 and ``max_connections``)."""
    idle_timeout_seconds: float = 0.0
    """Close a connection silent this long (0: never)."""
    sources: tuple[tuple[Network, str], ...] = ()
    """Networks whose connections without a client certificate act as the named principal."""

    def __post_init__(self) -> None:
        if not 1 <= self.in_flight <= 1024:
            raise InvalidInput("hostcommands.in_flight", "1 to 1024")
        if not 1 <= self.max_connections <= 65536:
            raise InvalidInput("hostcommands.max_connections", "1 to 65536")
        if not 0 <= self.max_connections_per_principal <= self.max_connections:
            raise InvalidInput("hostcommands.max_connections_per_principal", "0 (the default) to max_connections")
        if not 0 <= self.idle_timeout_seconds <= 86400:
            raise InvalidInput("hostcommands.idle_timeout_seconds", "0 to 86400")

    @property
    def principal_limit(self) -> int:
        return self.max_connections_per_principal or min(256, self.max_connections)

    @property
    def pending_limit(self) -> int:
        """Connections still in their TLS handshake, or refused and awaiting their one answer."""
        return max(32, self.max_connections // 2)

    @property
    def pending_per_source(self) -> int:
        """One IPv4 /24's or IPv6 /64's share of :attr:`pending_limit`: an eighth, so eight
        networks are needed to keep new clients out."""
        return max(4, self.pending_limit // 8)

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
