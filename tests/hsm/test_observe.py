"""Every command crossing the backend boundary is logged (key ids only) and timed, prepared or not."""

from __future__ import annotations

import logging
import secrets

import pytest

from hsmsvc.errors import InvalidPinBlock
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.commands import TranslatePin
from hsmsvc.hsm.model import PinBlock
from hsmsvc.types import Algorithm, KeyType, KeyUsage, PinBlockFormat
from tests.hsm.helpers import PAN, form
from tests.reference import ecb, iso0

ISO0 = PinBlockFormat.ISO_0


def test_execute_and_a_prepared_route_are_logged_and_timed(backend: Backend,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    tpk, tpk_clear = form(backend, KeyType.TPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    zpk, _ = form(backend, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    seen: list[tuple[str, float, str | None]] = []
    backend.timing = lambda name, seconds, error: seen.append((name, seconds, error))
    pin = f"{secrets.randbelow(10**6):06d}"
    block = ecb(Algorithm.TDES_2KEY, tpk_clear, iso0(pin, PAN))
    try:
        with caplog.at_level(logging.DEBUG, logger="hsmsvc.hsm.commands"):
            backend.execute(TranslatePin(pin=PinBlock(block, ISO0, PAN), src=tpk, dst=zpk, dst_format=ISO0))
            route = backend.pin_translator(src=tpk, src_format=ISO0, dst=zpk, dst_format=ISO0)
            route(block, PAN)
            with pytest.raises(InvalidPinBlock):
                route(bytes(8), PAN)
    finally:
        backend.timing = None
    assert [(n, e) for n, _, e in seen] == [("TranslatePin", None), ("TranslatePin", None),
                                            ("TranslatePin", "InvalidPinBlock")]
    assert all(s >= 0 for _, s, _ in seen)
    logged = [r.getMessage() for r in caplog.records if r.name == "hsmsvc.hsm.commands"]
    assert logged and all(f"keys={tpk.spec.key_id},{zpk.spec.key_id}" in m for m in logged)
    assert not any(PAN in m or pin in m or block.hex() in m.lower() for m in logged)



def test_a_command_shows_its_name_and_key_ids_never_its_pans_or_pin_data(backend: Backend) -> None:
    """Commands carry PANs, PIN blocks, offsets and PVVs; a repr (a log line, an assertion
    message, a debugger) shows none of them."""
    from hsmsvc.hsm.commands import PanHashes, VerifyPinPvv

    tpk, _ = form(backend, KeyType.TPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
    block = bytes.fromhex("0123456789ABCDEF")
    text = repr(PanHashes(pans=[PAN])) + repr(VerifyPinPvv(pin=PinBlock(block, ISO0, PAN), key=tpk, pvk=tpk,
                                                           pvki=1, pvv="4821"))
    assert PAN not in text and "4821" not in text and block.hex() not in text.lower(), text
    assert tpk.spec.key_id in text
