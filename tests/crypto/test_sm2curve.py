"""hsmsvc_client.sm2curve: sm2p256v1 arithmetic, Z_A, the KDF and verification, against an independent party.

The reference is tests/reference.py's plain-integer affine arithmetic (GB/T 32918.1-2016 clause
3.2.3.1, double-and-add), its Z (GB/T 32918.2-2016 clause 5.5) and KDF (GB/T 32918.4-2016 clause
5.4.3), which import nothing from hsmsvc; signatures are made by this module's own integer signer
(GB/T 32918.2-2016 clause 6.1). ``mul`` and ``mul_base`` run on OpenSSL's libcrypto where it has
SM2 (``BACKEND``); ``_py_mul``, the pure-Python fallback, is tested directly whichever backend runs.
"""

from __future__ import annotations

import os
import secrets
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsmsvc_client import sm2curve
from tests import reference as ref
from tests.sm2tools import encode, mul, CURVE, DEFAULT_ID, G, N, P


Pt = tuple[int, int]

# Full-width scalars in [1, n-1] (hypothesis's own integers lean to small values), small ones and edges.
full_width = st.binary(min_size=32, max_size=32).map(lambda b: int.from_bytes(b, "big") % (N - 1) + 1)
scalars = st.one_of(full_width, full_width, st.integers(1, N - 1),
                    st.sampled_from([1, 2, 3, 15, 16, 17, N - 2, N - 1, 2**255, 2**128 + 1]))
# A random point of the group, made by the reference: j * G for a random j.
points = full_width.map(lambda j: mul(j, G))


_ref_mul = mul
_enc = encode


def _sm2_sign(d: int, e: int) -> tuple[int, int]:
    """GB/T 32918.2-2016 clause 6.1 steps A3-A7 from e, in integers with the reference's arithmetic."""
    while True:
        k = 1 + secrets.randbelow(N - 1)                 # A3
        x1 = _ref_mul(k, G)[0]                           # A4
        r = (e + x1) % N                                 # A5
        if r == 0 or r + k == N:
            continue
        s = pow(1 + d, -1, N) * (k - r * d) % N          # A6
        if s:
            return r, s                                  # A7


def _small_x_point() -> Pt:
    """A point whose x is small, so x + p still fits in 32 bytes: y = sqrt(x^3 + ax + b), p = 3 mod 4."""
    assert P % 4 == 3
    for x in range(1000):
        rhs = (x**3 + CURVE[1] * x + CURVE[2]) % P
        y = pow(rhs, (P + 1) // 4, P)
        if y * y % P == rhs:
            return x, y
    raise AssertionError("no small x on the curve")


# --- the curve's constants -----------------------------------------------------------------------

def test_constants_are_the_standard_curve() -> None:
    """GB/T 32918.5-2017 clause 2: the recommended curve's p, a, b, n and G."""
    assert (sm2curve.P, sm2curve.A, sm2curve.B, sm2curve.G[0], sm2curve.G[1], sm2curve.N) == CURVE
    assert sm2curve.DEFAULT_ID == DEFAULT_ID


def test_backend_is_libcrypto_under_ci() -> None:
    """The server needs OpenSSL's constant-time ladder; CI's images have libcrypto with SM2."""
    assert sm2curve.BACKEND in ("libcrypto", "python")
    if os.environ.get("CI"):
        assert sm2curve.BACKEND == "libcrypto"


# --- scalar multiplication against the reference --------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(k=scalars, pt=points)
def test_mul_and_py_mul_match_the_reference(k: int, pt: Pt) -> None:
    """k * P (GB/T 32918.1-2016 clause 3.2.3.2) by libcrypto (or the fallback) and by the fallback."""
    want = _ref_mul(k, pt)
    assert sm2curve.mul(k, pt) == want
    assert sm2curve._py_mul(k, pt) == want


@settings(max_examples=20, deadline=None)
@given(k=scalars)
def test_mul_base_matches_the_reference(k: int) -> None:
    want = _ref_mul(k, G)
    assert sm2curve.mul_base(k) == want
    assert sm2curve.mul(k, G) == want
    assert sm2curve._py_mul(k, G) == want


@settings(max_examples=15, deadline=None)
@given(k=st.one_of(st.integers(-3 * N, 3 * N), st.builds(lambda m, j: m * N + j, st.integers(-3, 3), full_width)),
       pt=points)
def test_scalars_are_reduced_mod_n(k: int, pt: Pt) -> None:
    """n * P = O (the group has order n, cofactor 1), so k * P = (k mod n) * P for any integer k."""
    want = ref.ec_mul(CURVE, k % N, pt)
    assert sm2curve.mul(k, pt) == want
    assert sm2curve._py_mul(k, pt) == want
    assert sm2curve.mul_base(k) == ref.ec_mul(CURVE, k % N, G)


@pytest.mark.parametrize("k", [0, N, 2 * N, -N])
def test_multiples_of_n_give_the_point_at_infinity(k: int) -> None:
    pt = _ref_mul(1 + secrets.randbelow(N - 1), G)
    assert sm2curve.mul(k, pt) is None
    assert sm2curve.mul_base(k) is None
    assert sm2curve._py_mul(k, pt) is None
    assert sm2curve._py_mul(k, G) is None


def test_small_multiples_of_g() -> None:
    """1 * G = G, (n - 1) * G = -G = (xG, p - yG), 2 * G the reference's doubling."""
    for f in (sm2curve.mul_base, lambda k: sm2curve.mul(k, G), lambda k: sm2curve._py_mul(k, G)):
        assert f(1) == G
        assert f(N - 1) == (G[0], P - G[1])
        assert f(2) == ref.ec_add(CURVE, G, G)
        assert f(N + 1) == G


def test_thread_safety() -> None:
    """8 threads of 200 ``mul`` calls each, interleaved on a sample of 16 (k, P) whose products the
    reference computed: every answer is compared (a BN_CTX shared across threads would corrupt some)."""
    sample = []
    for _ in range(16):
        pt, k = _ref_mul(1 + secrets.randbelow(N - 1), G), 1 + secrets.randbelow(N - 1)
        sample.append((k, pt, _ref_mul(k, pt)))
    start = threading.Barrier(8)
    wrong: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            start.wait()
            for i in range(200):
                k, pt, want = sample[(t * 5 + i * 3) % len(sample)]
                if sm2curve.mul(k, pt) != want:
                    wrong.append((t, i))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and not wrong


# --- addition and negation ------------------------------------------------------------------------

@settings(max_examples=15, deadline=None)
@given(a=points, b=points)
def test_add_matches_the_reference(a: Pt, b: Pt) -> None:
    """Affine addition (GB/T 32918.1-2016 clause 3.2.3.1), incl. doubling, inverses and O."""
    assert sm2curve.add(a, b) == ref.ec_add(CURVE, a, b)
    assert sm2curve.add(a, a) == ref.ec_add(CURVE, a, a)
    assert sm2curve.neg(a) == (a[0], P - a[1])
    assert sm2curve.add(a, sm2curve.neg(a)) is None
    assert sm2curve.add(None, a) == a and sm2curve.add(a, None) == a


def test_add_of_two_infinities() -> None:
    assert sm2curve.add(None, None) is None


# --- encoding ------------------------------------------------------------------------------------

@settings(max_examples=15, deadline=None)
@given(pt=points)
def test_encode_decode_round_trip(pt: Pt) -> None:
    """04 || x || y, 32-byte fields (GB/T 32918.1-2016 clause 4.2.9)."""
    assert sm2curve.encode(pt) == _enc(pt)
    assert sm2curve.decode(_enc(pt)) == pt
    assert sm2curve.on_curve(pt)


def _bad_encodings() -> list[tuple[str, bytes]]:
    g = _enc(G)
    off = bytearray(g)
    off[-1] ^= 1
    x, y = _small_x_point()
    return [
        ("empty", b""),
        ("infinity", b"\x00"),
        ("compressed", bytes([2 + G[1] % 2]) + g[1:33]),
        ("no prefix", g[1:]),
        ("one byte more", g + b"\x00"),
        ("one byte less", g[:-1]),
        ("prefix 00", b"\x00" + g[1:]),
        ("prefix 02", b"\x02" + g[1:]),
        ("prefix 03", b"\x03" + g[1:]),
        ("hybrid 06", b"\x06" + g[1:]),
        ("hybrid 07", b"\x07" + g[1:]),
        ("off the curve", bytes(off)),
        ("all zero", b"\x04" + bytes(64)),
        ("x not reduced", b"\x04" + (x + P).to_bytes(32, "big") + y.to_bytes(32, "big")),
    ]


@pytest.mark.parametrize(("why", "data"), _bad_encodings(), ids=[w for w, _ in _bad_encodings()])
def test_decode_refuses(why: str, data: bytes) -> None:
    """Only a 65-byte uncompressed encoding of a point on the curve with coordinates in [0, p) is a
    point (GB/T 32918.1-2016 clause 4.2.10 and 6.2: public key validation)."""
    with pytest.raises(ValueError):
        sm2curve.decode(data)


def test_on_curve_refuses_unreduced_coordinates() -> None:
    """The equation holds mod p for x + p and y + p too; the range check must refuse them."""
    x, y = _small_x_point()
    assert sm2curve.on_curve((x, y))
    assert not sm2curve.on_curve((x + P, y))
    assert not sm2curve.on_curve((x, y + P))
    assert not sm2curve.on_curve((G[0], (G[1] + 1) % P))


# --- Z_A, SM3 and the KDF -------------------------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(uid=st.binary(min_size=1, max_size=200), pt=points)
def test_za_matches_the_reference(uid: bytes, pt: Pt) -> None:
    """Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA) (GB/T 32918.2-2016 clause 5.5)."""
    assert sm2curve.za(pt, uid) == ref.sm2_z(CURVE, uid, pt)
    assert sm2curve.za(pt) == ref.sm2_z(CURVE, DEFAULT_ID, pt)


def test_za_user_id_bounds() -> None:
    """ENTL is two bytes of bit length: an ID of 1 to 8191 bytes."""
    assert sm2curve.za(G, b"\x00" * 8191) == ref.sm2_z(CURVE, b"\x00" * 8191, G)
    for uid in (b"", b"\x00" * 8192):
        with pytest.raises(ValueError):
            sm2curve.za(G, uid)


@settings(max_examples=30, deadline=None)
@given(z=st.binary(max_size=100), length=st.integers(0, 300))
def test_kdf_matches_the_reference(z: bytes, length: int) -> None:
    """KDF(Z, klen) = SM3(Z || ct) blocks from ct = 1 (GB/T 32918.4-2016 clause 5.4.3)."""
    assert sm2curve.kdf(z, length) == ref.sm2_kdf(z, length)
    assert len(sm2curve.kdf(z, length)) == length


@pytest.mark.parametrize(("msg", "digest"), [
    (b"abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"),
    (b"abcd" * 16, "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"),
])
def test_sm3_annex_a(msg: bytes, digest: str) -> None:
    """GB/T 32905-2016 annex A examples 1 and 2."""
    assert sm2curve.sm3(msg) == bytes.fromhex(digest)


# --- verification -------------------------------------------------------------------------------

@settings(max_examples=10, deadline=None)
@given(message=st.binary(max_size=200), uid=st.binary(min_size=1, max_size=40))
def test_verify_accepts_an_independent_signature_and_refuses_tampered_ones(message: bytes, uid: bytes) -> None:
    """GB/T 32918.2-2016 clause 7.1 (B1-B7) on a signature from clause 6.1 written out above."""
    d = 1 + secrets.randbelow(N - 2)
    public = _ref_mul(d, G)
    e = int.from_bytes(ref.sm3(ref.sm2_z(CURVE, uid, public) + message), "big")
    r, s = _sm2_sign(d, e)
    assert sm2curve.verify(public, e, r, s)
    other = _ref_mul(d + 1, G)
    for pub, e2, r2, s2 in (
        (public, e + 1, r, s),
        (public, e, (r + 1) % N, s),
        (public, e, r, (s + 1) % N),
        (public, e, s, r),
        (other, e, r, s),
        (public, e, 0, s),            # B1: r in [1, n-1]
        (public, e, r, 0),            # B2: s in [1, n-1]
        (public, e, r + N, s),
        (public, e, r, s + N),
        (public, e, r, N - r),        # B5: t = r + s = 0 mod n
    ):
        assert not sm2curve.verify(pub, e2, r2, s2)
