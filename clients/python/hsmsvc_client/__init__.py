"""hsmsvc client SDK: mTLS channels, deadlines, retries and round-robin over the hsmsvc.v1 API."""

from hsmsvc_client.client import Client, ClientError, ClientTls

__all__ = ["Client", "ClientError", "ClientTls"]
