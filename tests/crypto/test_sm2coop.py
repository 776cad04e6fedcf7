"""hsmsvc.crypto.sm2coop, the server's half of two-party SM2, with the client's half written here.

The client side is this module's own: d1 and every client computation in plain integers with
tests/reference.py's arithmetic (it imports nothing from hsmsvc). The equations are the module's
docstring's (docs/architecture.md, "Two-party SM2"): P1 = d1^-1 G, joint P = d1^-1 P2 - G with
d = (d1 d2)^-1 - 1; Q1 = k1 G, s = d1 k1 s2 + d1 s3 - r, SM2's s of GB/T 32918.2-2016 clause 6.1 A6;
T1 = d1^-1 C1, d C1 = T2 - C1 for GB/T 32918.4-2016 clause 7.1 B3. Every finished signature is
verified under the joint key by OpenSSL (``openssl pkeyutl -verify``, a sample) or by GB/T
32918.2-2016 clause 7.1 written out here with the reference's arithmetic (the rest); ciphertexts are
OpenSSL's SM2 encryption (SM2Cipher DER, GB/T 35276-2017 clause 7.2).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from hsmsvc.crypto import sm2coop
from hsmsvc.errors import InvalidInput
from tests import reference as ref
from tests.sm2tools import sm2cipher, encode, mul, CURVE, DEFAULT_ID, SPKI_PREFIX, G, N, OpenSslSm2Verifier, P, openssl

NEG_G = (G[0], P - G[1])
# SubjectPublicKeyInfo of an sm2p256v1 key (GB/T 35276-2017 clause 7.1): id-ecPublicKey, sm2p256v1.

Pt = tuple[int, int]


def _sm3(data: bytes) -> bytes:
    """SM3 (GB/T 32905-2016), pyca's."""
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


_mul = mul
_enc = encode


def _dec(raw: bytes) -> Pt:
    assert len(raw) == 65 and raw[0] == 4
    pt = int.from_bytes(raw[1:33], "big"), int.from_bytes(raw[33:], "big")
    assert (pt[1] ** 2 - pt[0] ** 3 - CURVE[1] * pt[0] - CURVE[2]) % P == 0
    return pt


def _scalar() -> int:
    return 1 + secrets.randbelow(N - 1)


def _ref_verify(public: Pt, e: int, r: int, s: int) -> bool:
    """GB/T 32918.2-2016 clause 7.1 B1-B7 from e, in integers."""
    if not (1 <= r < N and 1 <= s < N):
        return False
    t = (r + s) % N
    if t == 0:
        return False
    pt = ref.ec_add(CURVE, ref.ec_mul(CURVE, s, G), ref.ec_mul(CURVE, t, public))
    return pt is not None and (e + pt[0]) % N == r


def _openssl_verifier(tmp: Path, public_der: bytes) -> Callable[[bytes, int, int, bytes], bool]:
    verify = OpenSslSm2Verifier(tmp, public_der)

    def check(message: bytes, r: int, s: int, uid: bytes = DEFAULT_ID) -> bool:
        return verify(message, encode_dss_signature(r, s), uid)

    return check


@dataclass
class Pair:
    """The test's client (d1, P1) and the server's loaded share, with d2 read from its encoding."""

    d1: int
    d2: int
    share: sm2coop.ServerShare
    joint: Pt

    @classmethod
    def make(cls) -> Pair:
        d1 = _scalar()
        p1 = _enc(_mul(pow(d1, -1, N), G))
        encoded = sm2coop.new_server_share(p1)
        assert len(encoded) == sm2coop.SHARE_LENGTH == 97 and encoded[32:] == p1
        d2 = int.from_bytes(encoded[:32], "big")
        assert 1 <= d2 < N
        share = sm2coop.load_share(encoded)
        p2 = _dec(share.server_point)
        joint = ref.ec_add(CURVE, _mul(pow(d1, -1, N), p2), NEG_G)  # the client's check: d1^-1 P2 - G
        assert joint is not None
        return cls(d1, d2, share, joint)

    def cosign(self, e: int) -> tuple[int, int]:
        """Q1 = k1 G to the server, s = d1 k1 s2 + d1 s3 - r from its answer; redrawn where clause 6.1
        A5/A6 would (s = 0, or r + s = 0 mod n, i.e. r + k = n)."""
        while True:
            k1 = _scalar()
            partial = self.share.cosign(digest=e.to_bytes(32, "big"), client_point=_enc(_mul(k1, G)))
            assert len(partial) == 96
            r, s2, s3 = (int.from_bytes(partial[i:i + 32], "big") for i in (0, 32, 64))
            assert 1 <= r < N and 1 <= s2 < N and 1 <= s3 < N
            s = (self.d1 * k1 * s2 + self.d1 * s3 - r) % N
            if s and (r + s) % N:
                return r, s


@pytest.fixture(scope="module")
def pair() -> Pair:
    return Pair.make()


# --- key generation ----------------------------------------------------------------------------

def test_joint_key_follows_from_both_shares(pair: Pair) -> None:
    """P2 = d2^-1 G; the joint key in public_der is d1^-1 P2 - G = d G with d = (d1 d2)^-1 - 1."""
    assert pair.share.server_point == _enc(_mul(pow(pair.d2, -1, N), G))
    d = (pow(pair.d1 * pair.d2, -1, N) - 1) % N
    assert pair.joint == _mul(d, G)
    assert pair.share.public_der == SPKI_PREFIX + _enc(pair.joint)
    assert pair.share.fingerprint == _sm3(pair.share.public_der)[:8]


def test_loading_the_same_encoding_gives_the_same_key(pair: Pair) -> None:
    p1 = _enc(_mul(pow(pair.d1, -1, N), G))
    again = sm2coop.load_share(pair.d2.to_bytes(32, "big") + p1)
    assert (again.public_der, again.server_point) == (pair.share.public_der, pair.share.server_point)
    mutable = bytearray(pair.d2.to_bytes(32, "big") + p1)
    assert sm2coop.load_share(mutable).public_der == pair.share.public_der  # type: ignore[arg-type]


def test_new_server_share_refuses_a_bad_client_share() -> None:
    g = bytearray(_enc(G))
    g[-1] ^= 1
    for bad in (bytes(g), _enc(G)[:33], b"", _enc(G) + b"\x00"):
        with pytest.raises(InvalidInput) as caught:
            sm2coop.new_server_share(bad)
        assert caught.value.field == "client_share"


# --- signing -------------------------------------------------------------------------------------

def test_two_hundred_cosignatures_verify_under_the_joint_key(tmp_path: Path) -> None:
    """200 two-party signatures over 4 keys, each finished by the client and verified under the
    joint key: 20 by OpenSSL (half with a non-default ID), 180 by clause 7.1 in integers."""
    checked_by_openssl = 0
    for key_no in range(4):
        pair = Pair.make()
        verify = _openssl_verifier(tmp_path, pair.share.public_der)
        for i in range(50):
            message = secrets.token_bytes(secrets.randbelow(200))
            uid = DEFAULT_ID if i % 2 else b"ALICE123@YAHOO.COM"
            e = int.from_bytes(_sm3(ref.sm2_z(CURVE, uid, pair.joint) + message), "big")  # clause 6.1 A1-A2
            r, s = pair.cosign(e)
            if i % 10 == 0:
                assert verify(message, r, s, uid), (key_no, i)
                checked_by_openssl += 1
            else:
                assert _ref_verify(pair.joint, e, r, s), (key_no, i)
        # The verifiers discriminate: the last signature with s changed, and under another ID.
        assert not _ref_verify(pair.joint, e, r, (s + 1) % N)
        assert not verify(message, r, (s + 1) % N, uid)
        assert not verify(message, r, s, uid + b"x")
    assert checked_by_openssl == 20


def test_a_partial_signature_finished_without_d1_does_not_verify(pair: Pair) -> None:
    """Neither share alone signs: s2 and s3 finished with a wrong d1 give no valid signature."""
    e = int.from_bytes(secrets.token_bytes(32), "big")
    k1 = _scalar()
    partial = pair.share.cosign(digest=e.to_bytes(32, "big"), client_point=_enc(_mul(k1, G)))
    r, s2, s3 = (int.from_bytes(partial[i:i + 32], "big") for i in (0, 32, 64))
    wrong = (pair.d1 + 1) % N
    assert _ref_verify(pair.joint, e, r, (pair.d1 * k1 * s2 + pair.d1 * s3 - r) % N)
    assert not _ref_verify(pair.joint, e, r, (wrong * k1 * s2 + wrong * s3 - r) % N)


def test_each_cosign_draws_fresh_k2_and_k3(pair: Pair) -> None:
    """The same e and Q1 twice: different r, s2 and s3 (k = k1 k3 + k2 is new each time)."""
    digest, q1 = secrets.token_bytes(32), _enc(_mul(_scalar(), G))
    answers = [pair.share.cosign(digest=digest, client_point=q1) for _ in range(10)]
    for part in (slice(0, 32), slice(32, 64), slice(64, 96)):
        assert len({a[part] for a in answers}) == len(answers)


def _bad_points() -> list[tuple[str, bytes]]:
    g = _enc(G)
    off = bytearray(g)
    off[-1] ^= 1
    for x in range(1000):  # a point with a small x, so that x + p still fits in 32 bytes
        rhs = (x**3 + CURVE[1] * x + CURVE[2]) % P
        y = pow(rhs, (P + 1) // 4, P)  # p = 3 mod 4
        if y * y % P == rhs:
            break
    return [
        ("empty", b""),
        ("infinity", b"\x00"),
        ("compressed", bytes([2 + G[1] % 2]) + g[1:33]),
        ("no prefix", g[1:]),
        ("one byte more", g + b"\x00"),
        ("one byte less", g[:-1]),
        ("prefix 02", b"\x02" + g[1:]),
        ("hybrid 06", b"\x06" + g[1:]),
        ("off the curve", bytes(off)),
        ("all zero", b"\x04" + bytes(64)),
        ("x not reduced", b"\x04" + (x + P).to_bytes(32, "big") + y.to_bytes(32, "big")),
    ]


@pytest.mark.parametrize(("why", "point"), _bad_points(), ids=[w for w, _ in _bad_points()])
def test_cosign_and_codecrypt_refuse_a_bad_client_point(pair: Pair, why: str, point: bytes) -> None:
    """Q1 and T1 must be points of the group (GB/T 32918.1-2016 clause 6.2): an invalid point would
    let the client learn about d2 from the answer (an invalid-curve attack)."""
    with pytest.raises(InvalidInput) as caught:
        pair.share.cosign(digest=bytes(32), client_point=point)
    assert caught.value.field == "client_point"
    with pytest.raises(InvalidInput) as caught:
        pair.share.codecrypt(point)
    assert caught.value.field == "client_point"


# --- decryption ----------------------------------------------------------------------------------

_sm2cipher = sm2cipher


def _client_decrypt(pair: Pair, d1: int, c1: Pt, c3: bytes, c2: bytes) -> bytes | None:
    """GB/T 32918.4-2016 clause 7.1 B1-B5 with d C1 = T2 - C1, T2 the server's d2^-1 (d1^-1 C1)."""
    t2 = _dec(pair.share.codecrypt(_enc(_mul(pow(d1, -1, N), c1))))
    shared = ref.ec_add(CURVE, t2, (c1[0], P - c1[1]))
    assert shared is not None
    x2, y2 = shared[0].to_bytes(32, "big"), shared[1].to_bytes(32, "big")
    t = ref.sm2_kdf(x2 + y2, len(c2))                                   # B4
    plain = bytes(a ^ b for a, b in zip(c2, t))                         # B5
    return plain if _sm3(x2 + plain + y2) == c3 else None               # B6


@pytest.mark.parametrize("length", [1, 32, 33, 100])
def test_two_party_decryption_of_an_openssl_ciphertext(pair: Pair, length: int) -> None:
    openssl()
    plain = secrets.token_bytes(length)
    c1, c3, c2 = _sm2cipher(ref.sm2_wrap(pair.share.public_der, plain))
    assert _dec(_enc(c1)) == c1
    assert _client_decrypt(pair, pair.d1, c1, c3, c2) == plain
    assert _client_decrypt(pair, (pair.d1 + 1) % N, c1, c3, c2) is None


def test_codecrypt_is_d2_inverse_times_t1(pair: Pair) -> None:
    t1 = _mul(_scalar(), G)
    assert pair.share.codecrypt(_enc(t1)) == _enc(_mul(pow(pair.d2, -1, N), t1))


# --- loading a share ---------------------------------------------------------------------------

def _p1() -> bytes:
    return _enc(_mul(_scalar(), G))


def _bad_shares() -> list[tuple[str, bytes]]:
    p1 = _p1()
    d2 = _scalar().to_bytes(32, "big")
    off = bytearray(p1)
    off[-1] ^= 1
    return [
        ("empty", b""),
        ("d2 only", d2),
        ("one byte less", (d2 + p1)[:-1]),
        ("one byte more", d2 + p1 + b"\x00"),
        ("d2 of 31 bytes", d2[1:] + p1),
        ("d2 = 0", bytes(32) + p1),
        ("d2 = n", N.to_bytes(32, "big") + p1),
        ("d2 = n + 1", (N + 1).to_bytes(32, "big") + p1),
        ("d2 = 2^256 - 1", b"\xff" * 32 + p1),
        ("P1 off the curve", d2 + bytes(off)),
        ("P1 compressed in 65 bytes", d2 + b"\x02" + p1[1:]),
        ("P1 all zero", d2 + b"\x04" + bytes(64)),
        # d2 = 1 and P1 = G: the joint key d2^-1 P1 - G is the point at infinity.
        ("joint key at infinity", (1).to_bytes(32, "big") + _enc(G)),
    ]


@pytest.mark.parametrize(("why", "encoded"), _bad_shares(), ids=[w for w, _ in _bad_shares()])
def test_load_share_refuses(why: str, encoded: bytes) -> None:
    with pytest.raises(InvalidInput) as caught:
        sm2coop.load_share(encoded)
    assert caught.value.field == "key"


def test_load_share_refuses_what_is_not_bytes() -> None:
    with pytest.raises(InvalidInput):
        sm2coop.load_share("00" * 97)  # type: ignore[arg-type]


@pytest.mark.parametrize("d2", [1, 2, N - 1])
def test_load_share_accepts_the_ends_of_the_range(d2: int) -> None:
    p1 = _p1()
    share = sm2coop.load_share(d2.to_bytes(32, "big") + p1)
    joint = ref.ec_add(CURVE, _mul(pow(d2, -1, N), _dec(p1)), NEG_G)
    assert joint is not None and share.public_der == SPKI_PREFIX + _enc(joint)


# --- the secret stays inside ---------------------------------------------------------------------

def test_repr_never_shows_d2(pair: Pair) -> None:
    d2_inv = pow(pair.d2, -1, N)
    for text in (repr(pair.share), str(pair.share), f"{pair.share!r}", f"{pair.share}"):
        for secret in (pair.d2, d2_inv):
            assert f"{secret:x}" not in text.lower() and str(secret) not in text
            assert f"{secret:064x}" not in text.lower()
    assert not hasattr(pair.share, "__dict__")  # __slots__: no vars() dump of d2
