"""Independent elliptic-curve references for the tests: key agreement (P-521 ECDH, SP 800-56A),
ECIES for a P-521 CTK, and SM2 arithmetic and key exchange (GB/T 32918); the standard library and
pyca/cryptography only, like tests/reference.py, which re-exports every name here.

Nothing here imports hsmsvc (tests/test_reference.py holds this module to that too).
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec

# -- key agreement -------------------------------------------------------------------------


def ecdh_p521_z(d: bytes, peer_spki: bytes) -> bytes:
    """The ECC CDH primitive of NIST SP 800-56A rev. 3 clause 5.7.1.2 on P-521: x(d * Q), 66 bytes."""
    key = ec.derive_private_key(int.from_bytes(d, "big"), ec.SECP521R1())
    peer = serialization.load_der_public_key(peer_spki)
    assert isinstance(peer, ec.EllipticCurvePublicKey)
    return key.exchange(ec.ECDH(), peer)


def p521_spki(x: bytes, y: bytes) -> bytes:
    """SubjectPublicKeyInfo DER (RFC 5480) of the P-521 point (x, y), as a partner would send it."""
    numbers = ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP521R1())
    return numbers.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)


def p521_public(d: bytes) -> bytes:
    """The SubjectPublicKeyInfo DER of the P-521 key pair with private scalar ``d``."""
    key = ec.derive_private_key(int.from_bytes(d, "big"), ec.SECP521R1())
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def one_step_kdf_sha512(z: bytes, length: int, fixed_info: bytes) -> bytes:
    """NIST SP 800-56C rev. 2 clause 4.1 one-step KDF, H = SHA-512: H(counter || Z || FixedInfo) blocks,
    the 32-bit counter from 1, truncated to ``length`` bytes (written out with hashlib, not pyca's)."""
    out = b""
    counter = 1
    while len(out) < length:
        out += hashlib.sha512(counter.to_bytes(4, "big") + z + fixed_info).digest()
        counter += 1
    return out[:length]


def agreement_fixed_info(algorithm_id: bytes, public_a: bytes, public_b: bytes, key_bits: int,
                         shared_info: bytes) -> bytes:
    """hsmsvc's FixedInfo as docs/architecture.md states it, in SP 800-56A rev. 3 clause 5.8.2.1.1's
    concatenation format: AlgorithmID, then SHA-256 of the two public keys in byte order (PartyUInfo,
    PartyVInfo), then key length in bits (4 bytes) || shared info (SuppPubInfo), each 4-byte length-prefixed."""
    ids = sorted((hashlib.sha256(public_a).digest(), hashlib.sha256(public_b).digest()))
    fields = [algorithm_id, ids[0], ids[1], key_bits.to_bytes(4, "big") + shared_info]
    return b"".join(len(f).to_bytes(4, "big") + f for f in fields)


# -- ECIES for a P-521 CTK -------------------------------------------------------------------

ECIES_ALGORITHM_ID = b"hsmsvc CTK ECIES P-521 SHA-512 AES-256-KWP"


def aes_kwp_wrap(kek: bytes, key: bytes) -> bytes:
    """AES key wrap with padding, RFC 5649 (NIST SP 800-38F KWP), by pyca."""
    return keywrap.aes_key_wrap_with_padding(kek, key)


def aes_kwp_unwrap(kek: bytes, wrapped: bytes) -> bytes:
    """The inverse of :func:`aes_kwp_wrap`; pyca raises ``InvalidUnwrap`` on an integrity failure."""
    return keywrap.aes_key_unwrap_with_padding(kek, wrapped)


def ecies_p521_kek(z: bytes, ephemeral_point: bytes, ctk_spki: bytes) -> bytes:
    """hsmsvc's CTK key-encryption key as docs/operations.md states it: the SP 800-56C rev. 2 one-step
    KDF (SHA-512) over Z with SP 800-56A rev. 3 clause 5.8.2.1.1 concatenation FixedInfo: AlgorithmID,
    the ephemeral point (PartyUInfo), SHA-256 of the CTK's SPKI (PartyVInfo), 256 as 4 bytes (SuppPubInfo),
    each field 4-byte length-prefixed; 32 bytes."""
    fields = [ECIES_ALGORITHM_ID, ephemeral_point, hashlib.sha256(ctk_spki).digest(), (256).to_bytes(4, "big")]
    return one_step_kdf_sha512(z, 32, b"".join(len(f).to_bytes(4, "big") + f for f in fields))


def ecies_p521_encrypt(ctk_spki: bytes, ephemeral_d: bytes, key: bytes) -> bytes:
    """C(1e, 1s) ECIES to a P-521 CTK with the ephemeral scalar ``ephemeral_d``: Qe (uncompressed SEC 1
    point, 133 bytes) || RFC 5649 wrap of ``key`` under :func:`ecies_p521_kek`."""
    point = ec.derive_private_key(int.from_bytes(ephemeral_d, "big"), ec.SECP521R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    kek = ecies_p521_kek(ecdh_p521_z(ephemeral_d, ctk_spki), point, ctk_spki)
    return point + aes_kwp_wrap(kek, key)


def ecies_p521_decrypt(ctk_d: bytes, ciphertext: bytes) -> bytes:
    """The inverse of :func:`ecies_p521_encrypt` with the CTK's private scalar ``ctk_d``."""
    point, wrapped = ciphertext[:133], ciphertext[133:]
    qx, qy = point[1:67], point[67:]
    assert point[0] == 4
    z = ecdh_p521_z(ctk_d, p521_spki(qx, qy))
    return aes_kwp_unwrap(ecies_p521_kek(z, point, p521_public(ctk_d)), wrapped)


# -- SM2 key exchange ------------------------------------------------------------------------
# A curve is the tuple (p, a, b, gx, gy, n); points are affine (x, y) tuples, None at infinity.


def sm3(data: bytes) -> bytes:
    """SM3 (GB/T 32905-2016), by pyca."""
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def ec_add(curve: tuple[int, ...], p1: tuple[int, int] | None, p2: tuple[int, int] | None) -> tuple[int, int] | None:
    """Affine point addition on y^2 = x^3 + ax + b over Fp (GB/T 32918.1-2016 clause 3.2.3.1)."""
    p, a = curve[0], curve[1]
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    if p1[0] == p2[0] and (p1[1] + p2[1]) % p == 0:
        return None
    if p1 == p2:
        lam = (3 * p1[0] ** 2 + a) * pow(2 * p1[1], -1, p) % p
    else:
        lam = (p2[1] - p1[1]) * pow(p2[0] - p1[0], -1, p) % p
    x3 = (lam * lam - p1[0] - p2[0]) % p
    return x3, (lam * (p1[0] - x3) - p1[1]) % p


def ec_mul(curve: tuple[int, ...], k: int, point: tuple[int, int]) -> tuple[int, int] | None:
    """[k]P by double-and-add, most significant bit first."""
    out = None
    for bit in bin(k)[2:]:
        out = ec_add(curve, out, out)
        if bit == "1":
            out = ec_add(curve, out, point)
    return out


def sm2_z(curve: tuple[int, ...], uid: bytes, point: tuple[int, int]) -> bytes:
    """Z = SM3(ENTL || ID || a || b || xG || yG || x || y), 32-byte fields (GB/T 32918.2-2016 clause 5.5)."""
    fields = [curve[1], curve[2], curve[3], curve[4], point[0], point[1]]
    return sm3((8 * len(uid)).to_bytes(2, "big") + uid + b"".join(v.to_bytes(32, "big") for v in fields))


def sm2_kdf(z: bytes, length: int) -> bytes:
    """KDF of GB/T 32918.3-2016 clause 5.4.3: SM3(Z || ct) blocks, 32-bit ct from 1, ``length`` bytes."""
    return b"".join(sm3(z + ct.to_bytes(4, "big")) for ct in range(1, length // 32 + 2))[:length]


def sm2_key_exchange(curve: tuple[int, ...], d: int, r: int, peer_p: tuple[int, int], peer_r: tuple[int, int],
                     id_a: bytes, id_b: bytes, initiator: bool, length: int) -> tuple[bytes, bytes, bytes]:
    """GB/T 32918.3-2016 clause 6.1 steps A4-A10 (``initiator``) or B1-B10, cofactor h = 1, written out:
    t = d + x̄·r mod n, U = [t](P_peer + [x̄_peer]R_peer), K = KDF(xU || yU || ZA || ZB, length).
    Returns (K, SB = S1 (prefix 02), SA = S2 (prefix 03))."""
    n = curve[5]
    w = ((n - 1).bit_length() + 1) // 2 - 1

    def x_bar(x: int) -> int:
        return 2**w + x % 2**w

    g = (curve[3], curve[4])
    own_p, own_r = ec_mul(curve, d, g), ec_mul(curve, r, g)
    assert own_p is not None and own_r is not None
    t = (d + x_bar(own_r[0]) * r) % n
    s = ec_add(curve, peer_p, ec_mul(curve, x_bar(peer_r[0]), peer_r))
    assert s is not None
    u = ec_mul(curve, t, s)
    assert u is not None
    (pa, ra), (pb, rb) = ((own_p, own_r), (peer_p, peer_r)) if initiator else ((peer_p, peer_r), (own_p, own_r))
    za, zb = sm2_z(curve, id_a, pa), sm2_z(curve, id_b, pb)
    xu, yu = u[0].to_bytes(32, "big"), u[1].to_bytes(32, "big")
    inner = sm3(xu + za + zb + b"".join(v.to_bytes(32, "big") for v in (*ra, *rb)))
    return sm2_kdf(xu + yu + za + zb, length), sm3(b"\x02" + yu + inner), sm3(b"\x03" + yu + inner)
