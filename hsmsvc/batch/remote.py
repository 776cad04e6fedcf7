"""The batch job's crypto through the service's batch RPCs, for a job that runs away from the HSM."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hsmsvc.errors import InvalidInput
from hsmsvc_client.v1 import pin_service_pb2 as pin_pb
from hsmsvc_client.v1 import types_pb2 as pb

if TYPE_CHECKING:
    from hsmsvc_client import Client

__all__ = ["RemoteMover"]

# Items per RPC: well under the server's batch limit and its message size.
_PER_CALL = 5_000


@dataclass(frozen=True)
class RemoteMover:
    """Moves PINs with ``PinService.ReEncryptStoredPins`` and checks samples with ``CompareStoredPins``."""

    client: Client
    source: pb.KeyRef
    target: pb.KeyRef
    timeout: float = 60.0

    def move(self, rows: Sequence[tuple[bytes, str]]) -> list[bytes | None]:
        out: list[bytes | None] = []
        for i in range(0, len(rows), _PER_CALL):
            part = rows[i : i + _PER_CALL]
            # The server refuses the whole call for a malformed length; send those rows as refused.
            size = Counter(len(v) for v, _ in part).most_common(1)[0][0] if part else 0
            sent = [j for j, (v, _) in enumerate(part) if len(v) == size]
            got: list[bytes | None] = [None] * len(part)
            if sent:
                r = self.client.pins.ReEncryptStoredPins(pin_pb.ReEncryptStoredPinsRequest(
                    old_psk=self.source, new_psk=self.target, accounts=[part[j][1] for j in sent],
                    stored_pins=b"".join(part[j][0] for j in sent)), timeout=self.timeout)
                width = len(r.stored_pins) // len(sent)
                failed = {e.index for e in r.errors}
                for k, j in enumerate(sent):
                    if k not in failed:
                        got[j] = bytes(r.stored_pins[k * width : (k + 1) * width])
            out.extend(got)
        return out

    def compare(self, rows: Sequence[tuple[bytes, bytes, str]]) -> list[bool]:
        out: list[bool] = []
        for i in range(0, len(rows), _PER_CALL):
            part = rows[i : i + _PER_CALL]
            if len({len(o) for o, _, _ in part}) > 1 or len({len(n) for _, n, _ in part}) > 1:
                raise InvalidInput("samples", "stored values of one size per key")
            r = self.client.pins.CompareStoredPins(pin_pb.CompareStoredPinsRequest(
                old_psk=self.source, new_psk=self.target, accounts=[a for _, _, a in part],
                old_stored_pins=b"".join(o for o, _, _ in part), new_stored_pins=b"".join(n for _, n, _ in part)),
                timeout=self.timeout)
            out.extend(r.same)
        return out
