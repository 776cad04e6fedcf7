"""Key components, parity and the TDES key policy."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsmsvc.crypto import components, kcv
from hsmsvc.errors import InvalidInput
from hsmsvc.types import Algorithm

from .strategies import _policy_ok, keys

H = bytes.fromhex


@given(st.binary(max_size=32))
def test_adjust_parity_is_odd_and_idempotent(raw: bytes) -> None:
    adj = components.adjust_odd_parity(raw)
    assert components.has_odd_parity(adj)
    assert components.adjust_odd_parity(adj) == adj
    # Only the low (parity) bit of each byte may change.
    assert all((a ^ b) in (0, 1) for a, b in zip(raw, adj))


@pytest.mark.parametrize("alg", [Algorithm.TDES_2KEY, Algorithm.TDES_3KEY, Algorithm.AES_256, Algorithm.SM4])
@given(data=st.data(), n=st.integers(2, 9))
def test_combine_is_xor_and_order_free(alg: Algorithm, data: st.DataObject, n: int) -> None:
    parts = [data.draw(keys(alg)) for _ in range(n)]
    acc = 0
    for p in parts:
        acc ^= int.from_bytes(p, "big")
    raw = acc.to_bytes(alg.key_length, "big")
    expected = components.adjust_odd_parity(raw) if alg.is_tdes else raw
    if alg.is_tdes and not _policy_ok(expected):
        # A combination that lands on a weak or degenerate key is refused.
        with pytest.raises(InvalidInput):
            components.combine(alg, parts)
        return
    key = components.combine(alg, parts)
    assert key == expected == components.combine(alg, list(reversed(parts)))
    assert components.component_kcvs(alg, parts) == [kcv.kcv(alg, p) for p in parts]


def test_single_component_refused() -> None:
    with pytest.raises(InvalidInput) as e:
        components.combine(Algorithm.AES_128, [bytes(16)])
    assert "dual control" in str(e.value)


def test_component_length_must_match() -> None:
    with pytest.raises(InvalidInput):
        components.combine(Algorithm.AES_128, [bytes(16), bytes(24)])


@pytest.mark.parametrize(
    "key",
    [
        "0101010101010101FEFEFEFEFEFEFEFE",  # FIPS 74 weak key in K1
        "0123456789ABCDEF01FE01FE01FE01FE",  # semi-weak K2
        "0123456789ABCDEF0123456789ABCDEF",  # K1 = K2: single DES
        "0123456789ABCDEFFEDCBA98765432100123456789ABCDEF",  # 3-key with K1 = K3
        "0023456789ABCDEFFEDCBA9876543210",  # even parity byte
    ],
)
def test_tdes_policy_rejections(key: str) -> None:
    with pytest.raises(InvalidInput) as e:
        components.check_tdes_key(H(key))
    assert e.value.field == "key"


def test_combining_equal_components_is_refused() -> None:
    # XOR of equal components is zero: weak key, rejected.
    k = H("0123456789ABCDEFFEDCBA9876543210")
    with pytest.raises(InvalidInput):
        components.combine(Algorithm.TDES_2KEY, [k, k])
