"""When a key version's replacement must start, from its measured rate of use (004 clause 7.1.1).

A version limited to ``max_uses`` is to be replaced at that count and is
refused at twice it (the hard stop). Its replacement serves only after a lead
time: a zone key's change activates ``activate_after`` after the core starts
it, and making and delivering it takes time too (``rotation_margin``). Started
at the limit, a busy key runs on past it by (rate x lead) uses, and into the
hard stop once that passes ``max_uses``: a zone ZPK at 300 uses, 3 s activation
and 240 uses/s was refused for 1.9 s of every 4.4 s. So the meter starts the
replacement when the uses counted plus those expected within the lead, at the
measured rate, reach ``max_uses``; and a rate at which even that cannot keep
the version under its limit is warned about with the numbers.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Final

from hsmsvc.errors import InvalidInput
from hsmsvc.keys.model import StoredKey
from hsmsvc.service.keysync import SyncSettings
from hsmsvc.types import KeyState, KeyType

__all__ = ["UseRate", "check_settings", "lead_seconds", "next_rotation"]

_BY_KEY_CHANGE: Final = frozenset({KeyType.ZPK, KeyType.MAK, KeyType.DEK})


def lead_seconds(settings: SyncSettings, key_type: KeyType, zone: str) -> float:
    """Seconds from starting a version's replacement to the replacement serving.

    A zone working key is replaced by a key change, which activates after
    ``activate_after``; any other key by a local rotation or a terminal's
    sign-on, at once; both get ``rotation_margin`` for the making and delivery.
    """
    delay = settings.activate_after.total_seconds() if zone and key_type in _BY_KEY_CHANGE else 0.0
    return delay + settings.rotation_margin.total_seconds()


def next_rotation(key: StoredKey, settings: SyncSettings | None) -> datetime | None:
    """When an ACTIVE version is due by age: half its own lifetime, or the server's ``max_age``
    for its type from activation (``UseMeter``), whichever is first; None if neither applies."""
    if key.state is not KeyState.ACTIVE:
        return None
    due = [d for d in (key.due_by_age_at,) if d is not None]
    rule = settings.rotation.get(key.cryptogram.spec.key_type) if settings is not None else None
    if rule is not None and rule.max_age is not None and key.activated_at is not None:
        due.append(key.activated_at + rule.max_age)
    return min(due) if due else None


def check_settings(settings: SyncSettings) -> list[str]:
    """Refuse rotation settings no replacement can keep up with; the warnings for those that barely can.

    Decided from the settings alone: a version due by age at ``max_age`` ends at
    twice it, so ``max_age`` must exceed the lead; with a declared peak rate, the
    uses a version takes during the lead must stay under the hard stop.
    """
    warnings: list[str] = []
    for key_type, r in settings.rotation.items():
        lead = lead_seconds(settings, key_type, "zone")
        field = f"rotation.{key_type.value}"
        if r.max_age is not None and r.max_age.total_seconds() <= lead:
            raise InvalidInput(f"{field}.max_age_seconds",
                               f"{r.max_age.total_seconds():g} s: a version due then ends at twice it, and its "
                               f"replacement takes {lead:g} s (activation delay and margin)")
        if r.max_uses is None or not r.peak_uses_per_second:
            continue
        during = r.peak_uses_per_second * lead
        numbers = (f"at {r.peak_uses_per_second:g} uses/s a replacement takes {lead:g} s (activation delay "
                   f"{lead - settings.rotation_margin.total_seconds():g} s and margin), {during:.0f} uses")
        if during >= 2 * r.max_uses:
            raise InvalidInput(f"{field}.max_uses", f"{r.max_uses}: {numbers}, past the hard stop at "
                                                    f"{2 * r.max_uses}; raise max_uses or shorten the activation")
        if during > r.max_uses:
            warnings.append(f"{field}: {numbers}, more than max_uses {r.max_uses}: versions will exceed it")
    return warnings


class UseRate:
    """A key version's uses per second, exponentially weighted, from its store counter.

    Read from the store's counter, not this process's calls, so servers sharing
    a database each see the whole rate. Unknown until ``warmup`` seconds have
    passed since the first reading: a few quick uses say nothing about a rate.
    """

    __slots__ = ("_tau", "_warmup", "_first", "_last", "value")

    def __init__(self, tau: float = 2.0, warmup: float = 1.0) -> None:
        self._tau = tau
        self._warmup = warmup
        self._first: tuple[float, int] | None = None
        self._last: tuple[float, int] | None = None
        self.value: float | None = None
        """Uses per second, once known."""

    def observe(self, now: float, count: int) -> float | None:
        """Take the counter's reading at monotonic time ``now``; the rate, once known."""
        if self._first is None or self._last is None:
            self._first = self._last = (now, count)
            return None
        t0, c0 = self._first
        t1, c1 = self._last
        if self.value is None:
            if now - t0 >= self._warmup:
                self.value = (count - c0) / (now - t0)
                self._last = (now, count)
            return self.value
        dt = now - t1
        if dt > 0:
            weight = 1.0 - math.exp(-dt / self._tau)
            self.value += weight * ((count - c1) / dt - self.value)
            self._last = (now, count)
        return self.value
