"""Hypothesis strategies shared by the crypto tests."""

from hypothesis import strategies as st

from hsmsvc.crypto import components
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm

pins = st.text("0123456789", min_size=4, max_size=12)
pans = st.text("0123456789", min_size=13, max_size=19)


def keys(algorithm: Algorithm) -> st.SearchStrategy[bytes]:
    raw = st.binary(min_size=algorithm.key_length, max_size=algorithm.key_length)
    if algorithm.is_tdes:
        return raw.map(components.adjust_odd_parity).filter(_policy_ok)
    return raw


def _policy_ok(key: bytes) -> bool:
    try:
        components.check_tdes_key(key)
    except InvalidInput:
        return False
    return True
