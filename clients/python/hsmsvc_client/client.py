"""A typed client for the hsmsvc gRPC API.

* mTLS: :class:`ClientTls` holds the CA that signed the servers and this
  client's certificate and key; plaintext needs :meth:`Client.insecure`.
* Deadlines on every call: 5 s per attempt by default; a ``timeout`` given to a
  call bounds the whole call, retries included.
* Round-robin across several server addresses, one channel each.
* Retries with exponential backoff and jitter on UNAVAILABLE, for idempotent
  calls only, for up to ``retry_budget`` seconds (default 8 s: a server that
  is killed and restarted is back within it): a PIN verification is not
  retried (it counts attempts), nor is any call that changes a key. CANCELLED
  is retried the same way: this client never cancels a call, and a server
  shutting down answers CANCELLED to calls it had received but not yet started.

The request and response messages are those of :mod:`hsmsvc_client.v1`; the
convenience methods cover the everyday calls.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Final, Sequence

import grpc

from hsmsvc_client.v1 import card_service_pb2_grpc as card_grpc
from hsmsvc_client.v1 import ceremony_service_pb2_grpc as ceremony_grpc
from hsmsvc_client.v1 import data_service_pb2 as data_pb
from hsmsvc_client.v1 import data_service_pb2_grpc as data_grpc
from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import key_service_pb2_grpc as key_grpc
from hsmsvc_client.v1 import key_sync_service_pb2_grpc as sync_grpc
from hsmsvc_client.v1 import mac_service_pb2 as mac_pb
from hsmsvc_client.v1 import mac_service_pb2_grpc as mac_grpc
from hsmsvc_client.v1 import pin_service_pb2 as pin_pb
from hsmsvc_client.v1 import pin_service_pb2_grpc as pin_grpc
from hsmsvc_client.v1 import signature_service_pb2_grpc as signature_grpc
from hsmsvc_client.v1 import status_service_pb2_grpc as status_grpc
from hsmsvc_client.v1 import terminal_service_pb2_grpc as terminal_grpc
from hsmsvc_client.v1 import types_pb2 as pb

__all__ = ["Client", "ClientError", "ClientTls", "IDEMPOTENT"]

# Calls that may safely run twice.
IDEMPOTENT: Final = frozenset({
    "TranslatePin", "TranslatePinBatch", "EncryptPinForStorage", "GeneratePinOffset", "GeneratePvv",
    "ReEncryptStoredPins", "CompareStoredPins", "GenerateMac", "VerifyMac", "GenerateMacBatch", "VerifyMacBatch",
    "Encrypt", "Decrypt", "ReEncrypt", "EncryptBatch", "GetKey", "ListKeys", "GetKeyCheckValue", "ExportKey",
    "GetPublicKey", "ApplyKeyChange", "ConfirmKeyChange", "GetKeyFormation", "AcknowledgeKeyChange",
    "GetSealStatus", "GetServerStatus", "Sign", "Verify", "GenerateCsr", "CoDecrypt", "GenerateCvv", "VerifyArqc",
    "VerifyArqcBatch", "VerifyDukptMac", "GenerateDukptMac", "DecryptDukptData", "EncryptDukptData",
    "GenerateIssuerScript",
})
# VerifyCvv, VerifyCvvBatch and VerifyDynamicCvv are not, as VerifyPin is not: a wrong value counted
# before its answer was lost would be counted again.
# CoSign is not: a retry must draw a fresh k1 (hsmsvc_client.cosign does), and
# CreateCoSigningKey makes a key.
# SubmitUnsealShare is not: a share counted before its answer was lost would be refused as a repeat.
# StartKeyChange is not: its first attempt may have been confirmed by the peer before the
# answer was lost, and a second would then start a second change.
# What an idempotent call is tried again on. CANCELLED: a draining gRPC server cancels the
# calls that reached it after its shutdown began but before a handler took them (seen
# behind haproxy as 1 in ~8,000 calls at a SIGTERM, tests/ops/test_replicas.py); this
# client never cancels a call, so a CANCELLED comes from the other side.
_RETRY_ON: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
# Channels try to reconnect to a server that went away after 0.1 s, then at
# most every second (grpc's defaults start at 1 s and grow by 1.6 up to 120 s:
# a server back after 1.5 s was first reached 2.6 s or 4.2 s after it died).
_RECONNECT: Final = (("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 1000))
_STUBS: Final = {
    "keys": key_grpc.KeyServiceStub,
    "pins": pin_grpc.PinServiceStub,
    "macs": mac_grpc.MacServiceStub,
    "data": data_grpc.DataServiceStub,
    "sync": sync_grpc.KeySyncServiceStub,
    "ceremony": ceremony_grpc.CeremonyServiceStub,
    "status": status_grpc.StatusServiceStub,
    "signatures": signature_grpc.SignatureServiceStub,
    "cosigning": signature_grpc.CoSigningServiceStub,
    "cards": card_grpc.CardServiceStub,
    "terminals": terminal_grpc.TerminalServiceStub,
}


class ClientError(Exception):
    """A call that ended with a status other than OK."""

    def __init__(self, code: grpc.StatusCode, details: str, request_id: str) -> None:
        super().__init__(f"{code.name}: {details} (request id {request_id})")
        self.code = code
        self.details = details
        self.request_id = request_id


@dataclass(frozen=True)
class ClientTls:
    """PEM files: the CA that signed the servers, and this client's certificate and key."""

    ca: str
    cert: str
    key: str
    # For IP-addressed servers whose certificate names a host.
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            Path(self.ca).read_bytes(), Path(self.key).read_bytes(), Path(self.cert).read_bytes()
        )


def ref(key: str | pb.KeyRef, version: int = 0) -> pb.KeyRef:
    """A KeyRef from an id, or ``alias:<name>``."""
    if isinstance(key, pb.KeyRef):
        return key
    if key.startswith("alias:"):
        return pb.KeyRef(alias=key[6:], version=version)
    return pb.KeyRef(key_id=key, version=version)


class _Service:
    def __init__(self, client: Client, name: str) -> None:
        self._client = client
        self._name = name

    def __getattr__(self, method: str) -> Any:
        def call(request: Any, timeout: float | None = None) -> Any:
            return self._client._call(self._name, method, request, timeout)

        return call


class Client:
    """Calls hsmsvc over one or more channels. Thread-safe; close() when done."""

    def __init__(
        self,
        addresses: str | Sequence[str],
        tls: ClientTls | None,
        deadline: float = 5.0,
        retries: int | None = None,
        backoff: float = 0.05,
        interceptors: Sequence[Any] = (),
        _insecure: bool = False,
        retry_budget: float = 8.0,
        max_backoff: float = 1.0,
    ) -> None:
        """``deadline`` bounds each attempt; an idempotent call that meets UNAVAILABLE (or CANCELLED) is tried again,
        on the next address at once, and once every address has been tried after ``backoff``
        doubling up to ``max_backoff`` (with jitter), while a retry can start within
        ``retry_budget`` seconds of the first attempt. ``retries`` caps the
        number of retries (None: the budget alone; 0: none).
        """
        targets = [addresses] if isinstance(addresses, str) else list(addresses)
        if not targets:
            raise ValueError("at least one address")
        if tls is None and not _insecure:
            raise ValueError("mTLS credentials are required; use Client.insecure() for development")
        options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", 16 * 1024 * 1024), *_RECONNECT]
        if tls is not None and tls.server_name:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
        self._channels = [
            grpc.secure_channel(t, tls.credentials(), options) if tls is not None else grpc.insecure_channel(t, options)
            for t in targets
        ]
        if interceptors:
            # Client interceptors (tracing, recording): they see every request.
            self._raw = self._channels
            self._channels = [grpc.intercept_channel(ch, *interceptors) for ch in self._raw]
        self._stubs = [{n: cls(ch) for n, cls in _STUBS.items()} for ch in self._channels]
        self._next = itertools.cycle(range(len(self._channels)))
        self._lock = threading.Lock()
        self.deadline = deadline
        self.retries = retries
        self.backoff = backoff
        self.retry_budget = retry_budget
        self.max_backoff = max_backoff
        self.keys = _Service(self, "keys")
        self.pins = _Service(self, "pins")
        self.macs = _Service(self, "macs")
        self.data = _Service(self, "data")
        self.sync = _Service(self, "sync")
        self.ceremony = _Service(self, "ceremony")
        self.status = _Service(self, "status")
        self.signatures = _Service(self, "signatures")
        self.cosigning = _Service(self, "cosigning")
        self.cards = _Service(self, "cards")
        self.terminals = _Service(self, "terminals")

    @classmethod
    def insecure(cls, addresses: str | Sequence[str], **kw: Any) -> Client:
        """Plaintext, for a server started with ``--insecure-dev`` only."""
        return cls(addresses, None, _insecure=True, **kw)

    def close(self) -> None:
        for ch in getattr(self, "_raw", self._channels):
            ch.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, service: str, method: str, request: Any, timeout: float | None,
              remake: Callable[[], Any] | None = None) -> Any:
        # Retries are this loop's, not grpc's service-config retryPolicy: that caps
        # maxAttempts at 5 and runs every attempt within the one call's deadline, so
        # riding out a restart of a few seconds would take a deadline longer than the
        # outage and backoffs of seconds; and it retries on the channel it began on,
        # where this loop moves each attempt to the next address. Using both would
        # multiply the attempts, so the channels have no retryPolicy.
        # A caller's ``timeout`` bounds the whole call, retries included; without one each
        # attempt has ``deadline`` and the retries ``retry_budget``.
        # ``remake``: a call that may be tried again only as a new request (CoSign: a fresh k1 each time).
        retry = (method in IDEMPOTENT or remake is not None) and self.retries != 0
        rid = uuid.uuid4().hex
        started = time.monotonic()
        end = None if timeout is None else started + timeout
        attempt = 0
        while True:
            with self._lock:
                i = next(self._next)
            fn = getattr(self._stubs[i][service], method)
            left = self.deadline if end is None else end - time.monotonic()
            try:
                return fn(request, timeout=left, metadata=(("x-request-id", rid),))
            except grpc.RpcError as e:
                code = e.code()
                attempt += 1
                rounds, other = divmod(attempt, len(self._channels))
                if other:
                    # Another address at once: with one replica of three down, sleeping before
                    # each move cost a third of the calls 40-110 ms (tests/ops/test_replicas.py).
                    pause = 0.0
                else:
                    # Each address tried: equal jitter, half the backoff plus up to as much again
                    # at random, so clients that lost the same server do not all come back at once.
                    step = min(self.backoff * 2 ** min(rounds - 1, 30), self.max_backoff)
                    pause = step / 2 + random.uniform(0, step / 2)
                if (not retry or code not in _RETRY_ON
                        or (self.retries is not None and attempt > self.retries)
                        or time.monotonic() + pause - started > self.retry_budget
                        or (end is not None and time.monotonic() + pause >= end)):
                    raise ClientError(code, e.details() or "", rid) from None
                time.sleep(pause)
                if remake is not None:
                    request = remake()

    # -- everyday calls ----------------------------------------------------------------

    def translate_pin(
        self, source: str, destination: str, pin_block: bytes, pan: str = "",
        source_format: pb.PinBlockFormat = pb.PIN_BLOCK_FORMAT_ISO_0,
        destination_format: pb.PinBlockFormat = pb.PIN_BLOCK_FORMAT_ISO_0,
    ) -> bytes:
        r = self.pins.TranslatePin(pin_pb.TranslatePinRequest(
            source_key=ref(source), source_format=source_format, destination_key=ref(destination),
            destination_format=destination_format, pin_block=pin_block, pan=pan))
        return bytes(r.pin_block)

    def verify_pin_pvv(self, key: str, pin_block: bytes, pan: str, pvk: str, pvki: int, pvv: str,
                       fmt: pb.PinBlockFormat = pb.PIN_BLOCK_FORMAT_ISO_0) -> bool:
        r = self.pins.VerifyPin(pin_pb.VerifyPinRequest(
            key=ref(key), format=fmt, pin_block=pin_block, pan=pan,
            pvv=pin_pb.PvvCheck(pvk=ref(pvk), pvki=pvki, pvv=pvv)))
        return bool(r.verified)

    def verify_pin_offset(self, key: str, pin_block: bytes, pan: str, pvk: str, validation_data: str,
                          offset: str, fmt: pb.PinBlockFormat = pb.PIN_BLOCK_FORMAT_ISO_0) -> bool:
        r = self.pins.VerifyPin(pin_pb.VerifyPinRequest(
            key=ref(key), format=fmt, pin_block=pin_block, pan=pan,
            ibm3624=pin_pb.Ibm3624Check(pvk=ref(pvk), validation_data=validation_data, offset=offset)))
        return bool(r.verified)

    def generate_mac(self, key: str, data: bytes, algorithm: pb.MacAlgorithm = pb.MAC_ALGORITHM_ISO9797_ALG3,
                     padding: pb.MacPadding = pb.MAC_PADDING_METHOD_1, mac_length: int = 0) -> bytes:
        if algorithm not in (pb.MAC_ALGORITHM_ISO9797_ALG1, pb.MAC_ALGORITHM_ISO9797_ALG3):
            padding = pb.MAC_PADDING_UNSPECIFIED
        r = self.macs.GenerateMac(mac_pb.GenerateMacRequest(
            key=ref(key), algorithm=algorithm, padding=padding, data=data, mac_length=mac_length))
        return bytes(r.mac)

    def verify_mac(self, key: str, data: bytes, mac: bytes, algorithm: pb.MacAlgorithm = pb.MAC_ALGORITHM_ISO9797_ALG3,
                   padding: pb.MacPadding = pb.MAC_PADDING_METHOD_1) -> bool:
        if algorithm not in (pb.MAC_ALGORITHM_ISO9797_ALG1, pb.MAC_ALGORITHM_ISO9797_ALG3):
            padding = pb.MAC_PADDING_UNSPECIFIED
        r = self.macs.VerifyMac(mac_pb.VerifyMacRequest(
            key=ref(key), algorithm=algorithm, padding=padding, data=data, mac=mac))
        return bool(r.verified)

    def encrypt(self, key: str, plaintext: bytes, mode: pb.CipherMode = pb.CIPHER_MODE_GCM,
                padding: pb.DataPadding = pb.DATA_PADDING_NONE, aad: bytes = b"") -> tuple[bytes, bytes]:
        """Returns (ciphertext, iv)."""
        r = self.data.Encrypt(data_pb.EncryptRequest(
            key=ref(key), cipher=data_pb.FieldCipher(mode=mode, padding=padding, aad=aad), plaintext=plaintext))
        return bytes(r.ciphertext), bytes(r.iv)

    def decrypt(self, key: str, ciphertext: bytes, iv: bytes, mode: pb.CipherMode = pb.CIPHER_MODE_GCM,
                padding: pb.DataPadding = pb.DATA_PADDING_NONE, aad: bytes = b"", version: int = 0) -> bytes:
        r = self.data.Decrypt(data_pb.DecryptRequest(
            key=ref(key, version), cipher=data_pb.FieldCipher(mode=mode, padding=padding, iv=iv, aad=aad),
            ciphertext=ciphertext))
        return bytes(r.plaintext)

    def get_key(self, key: str) -> pb.KeyInfo:
        info: pb.KeyInfo = self.keys.GetKey(key_pb.GetKeyRequest(key=ref(key))).key
        return info

    def get_public_key(self, key: str) -> tuple[bytes, bytes]:
        """A KTK's public key (SubjectPublicKeyInfo DER) and its fingerprint, to publish to terminals."""
        r = self.keys.GetPublicKey(key_pb.GetPublicKeyRequest(key=ref(key)))
        return bytes(r.public_key), bytes(r.fingerprint)
