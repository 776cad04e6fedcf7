"""hsmsvc client SDK: mTLS channels, deadlines, retries and round-robin over the hsmsvc.v1 API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hsmsvc_client.client import Client, ClientError, ClientTls

__all__ = ["Client", "ClientError", "ClientTls"]


def __getattr__(name: str) -> Any:
    # Lazy (PEP 562): importing hsmsvc_client.sm2curve, as the server's SM2 does, must not import
    # grpc, whose logging a command line silences before it first imports grpc (cli/remote.py).
    if name in __all__:
        from hsmsvc_client import client

        return getattr(client, name)
    raise AttributeError(f"module 'hsmsvc_client' has no attribute {name!r}")
