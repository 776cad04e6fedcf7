"""Independent reference computations for the tests: the standard library and pyca/cryptography only.

Nothing here imports hsmsvc (tests/test_reference.py parses this module's imports to
hold it to that): a test checks what hsmsvc returns against what these functions
compute from clear keys the test knows, so a fault in hsmsvc's own crypto cannot
vouch for itself. Each function names the standard it writes out, and
tests/test_reference.py pins the functions to published vectors.

A block cipher is named by a string ("TDES_2KEY", "TDES_3KEY", "AES_128", "SM4", or
just "TDES" or "AES": the key's length decides the rest) or by an enum member whose
value is such a string, so the tests may pass ``hsmsvc.types.Algorithm`` members as
they are without this module importing them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import subprocess
import tempfile
import warnings
from enum import Enum
from pathlib import Path

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import cmac as pyca_cmac
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import hmac as pyca_hmac
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import BlockCipherAlgorithm, Cipher, algorithms, modes

# -- block ciphers ---------------------------------------------------------------------


def _name(alg: str | Enum) -> str:
    return str(alg.value) if isinstance(alg, Enum) else alg


def primitive(alg: str | Enum, key: bytes) -> BlockCipherAlgorithm:
    """pyca's block cipher for ``alg`` under ``key``.

    TDES (ANSI X9.52 / ISO/IEC 18033-3) keys are K1||K2 (two-key, run as K1||K2||K1),
    K1||K2||K3, or a single-DES K (run as K||K||K, the single DES of ISO/IEC 9797-1
    MAC algorithm 3); AES is FIPS 197, SM4 is GB/T 32907-2016.
    """
    name = _name(alg)
    if name.startswith("TDES"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if len(key) == 8:
                return TripleDES(key * 3)
            if len(key) == 16:
                return TripleDES(key + key[:8])
            return TripleDES(key)
    if name == "SM4":
        return algorithms.SM4(key)
    if name.startswith("AES"):
        return algorithms.AES(key)
    raise ValueError(f"not a block cipher: {name}")


def ecb(alg: str | Enum, key: bytes, data: bytes, decrypt: bool = False) -> bytes:
    """ECB encipherment (or decipherment) of whole blocks (NIST SP 800-38A clause 6.1)."""
    c = Cipher(primitive(alg, key), modes.ECB())
    ctx = c.decryptor() if decrypt else c.encryptor()
    return ctx.update(data) + ctx.finalize()


def tdes_ecb(key: bytes, data: bytes, decrypt: bool = False) -> bytes:
    """:func:`ecb` under a TDES (or single-DES) key."""
    return ecb("TDES", key, data, decrypt)


def aes_ecb(key: bytes, data: bytes) -> bytes:
    """:func:`ecb` under an AES key."""
    return ecb("AES", key, data)


def odd_parity(key: bytes) -> bytes:
    """``key`` with each byte's low bit set so the byte has odd parity (the DES key parity of FIPS 46-3)."""
    return bytes(b & 0xFE | (bin(b & 0xFE).count("1") + 1) % 2 for b in key)


def xor(*parts: bytes) -> bytes:
    """The XOR of equal-length byte strings (key components combine so, ANSI X9.24-1)."""
    out = bytes(len(parts[0]))
    for p in parts:
        out = bytes(a ^ b for a, b in zip(out, p))
    return out


def kcv(alg: str | Enum, key: bytes, length: int = 3) -> bytes:
    """A key check value (ANSI X9.24-1:2017): for AES the leftmost bytes of the CMAC of a zero
    block; for TDES, and for SM4 by the same vendor convention, of the encipherment of a zero block."""
    if _name(alg).startswith("AES"):
        return cmac(alg, key, bytes(16))[:length]
    block = 8 if _name(alg).startswith("TDES") else 16
    return ecb(alg, key, bytes(block))[:length]


def aes_ecb_kcv(key: bytes, length: int = 3) -> bytes:
    """The legacy AES KCV some partners state: the leftmost bytes of the encipherment of a zero
    block (the TDES method carried over), unlike X9.24-1:2017's CMAC form in :func:`kcv`."""
    return aes_ecb(key, bytes(16))[:length]


def tdes_kcv(key: bytes) -> bytes:
    """:func:`kcv` of a TDES key: 3 bytes."""
    return kcv("TDES", key)


# The legacy ECB form's key-type variants, as a peer applies them: the KEK's first byte
# XORed with its cargo's constant, in the manner of the payShield and Atalla key-type
# variants. A bilateral convention, so written out here as the peer holds it.
ECB_VARIANTS = {"ZMK": 0xA6, "TMK": 0x5A, "ZPK": 0x6A, "TPK": 0xDE, "PVK": 0x2B, "MAK": 0x50, "TAK": 0x74,
                "DEK": 0x9C, "PSK": 0x3C}


def variant(kek: bytes, v: int | str) -> bytes:
    """The variant of a KEK for one key type: its first byte XORed with the constant ``v``, or
    with :data:`ECB_VARIANTS`' constant for the key type named ``v``."""
    c = ECB_VARIANTS[v] if isinstance(v, str) else v
    return bytes([kek[0] ^ c]) + kek[1:]


# payShield's variant key schemes under a ZMK (Thales payShield Host Programmer's Manual, key
# schemes U and T): the 8-byte part i of a double- (U) or triple-length (T) key is TDES-ECB
# enciphered under the ZMK with the first byte of the ZMK's second 8-byte part (a double-length
# ZMK's right half) XORed with the i-th constant below. Written out here from that documented
# method: no published worked example with a clear ZMK was found to pin it to
# (tests/test_reference.py says so); for a triple-length ZMK the same byte is assumed.
PAYSHIELD_VARIANTS = {16: (0xA6, 0x5A), 24: (0x6A, 0xDE, 0x2B)}


def _payshield_zmks(zmk: bytes, length: int) -> list[bytes]:
    assert len(zmk) in (16, 24), "a double- or triple-length ZMK"
    return [zmk[:8] + bytes([zmk[8] ^ v]) + zmk[9:] for v in PAYSHIELD_VARIANTS[length]]


def payshield_variant_wrap(zmk: bytes, key: bytes) -> bytes:
    """``key`` (16 or 24 bytes) under ``zmk`` in payShield key scheme U or T."""
    return b"".join(tdes_ecb(z, key[8 * i: 8 * i + 8]) for i, z in enumerate(_payshield_zmks(zmk, len(key))))


def payshield_variant_unwrap(zmk: bytes, wrapped: bytes) -> bytes:
    """The inverse of :func:`payshield_variant_wrap`."""
    zmks = _payshield_zmks(zmk, len(wrapped))
    return b"".join(tdes_ecb(z, wrapped[8 * i: 8 * i + 8], decrypt=True) for i, z in enumerate(zmks))


# -- MACs --------------------------------------------------------------------------------


def cbc_mac(alg: str | Enum, key: bytes, data: bytes) -> bytes:
    """ISO/IEC 9797-1:2011 MAC algorithm 1 with padding method 1: the last block of the CBC
    encipherment, zero IV, of ``data`` right-padded with zero bytes to whole blocks."""
    bs = primitive(alg, key).block_size // 8
    data = data + bytes(-len(data) % bs)
    ctx = Cipher(primitive(alg, key), modes.CBC(bytes(bs))).encryptor()
    return (ctx.update(data) + ctx.finalize())[-bs:]


def retail_mac(key: bytes, data: bytes) -> bytes:
    """ISO/IEC 9797-1:2011 MAC algorithm 3 (ANSI X9.19 retail MAC), padding method 1, under
    K||K': CBC-MAC under single-DES K, then output transformation 3, E(K, D(K', H))."""
    k1, k2 = key[:8], key[8:16]
    return tdes_ecb(k1, tdes_ecb(k2, cbc_mac("TDES", k1, data), decrypt=True))


def cmac(alg: str | Enum, key: bytes, data: bytes) -> bytes:
    """CMAC (NIST SP 800-38B; ISO/IEC 9797-1:2011 MAC algorithm 5), by pyca."""
    c = pyca_cmac.CMAC(primitive(alg, key))
    c.update(data)
    return c.finalize()


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """:func:`cmac` under an AES key."""
    return cmac("AES", key, data)


def unionpay_pos_mac_stages(alg: str | Enum, key: bytes, data: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """The China UnionPay POS ("ECB") MAC's blocks, steps b) to f), over the cipher's block of n bytes
    (8 for TDES, the POS terminal specification; 16 for SM4, its national-algorithm form):
    RESULT BLOCK (the n-byte blocks of ``data``, zero-padded, XORed; one zero block if empty),
    ENC BLOCK1 = E(first n of its 2n upper-case hex characters), TEMP BLOCK = ENC BLOCK1 XOR the
    last n characters, ENC BLOCK2 = E(TEMP BLOCK)."""
    n = primitive(alg, key).block_size // 8
    padded = data + bytes(-len(data) % n) if data else bytes(n)
    result = bytes(n)
    for i in range(0, len(padded), n):
        result = xor(result, padded[i:i + n])
    hexed = result.hex().upper().encode("ascii")
    enc1 = ecb(alg, key, hexed[:n])
    temp = xor(enc1, hexed[n:])
    return result, enc1, temp, ecb(alg, key, temp)


def unionpay_pos_mac(alg: str | Enum, key: bytes, data: bytes) -> bytes:
    """The UnionPay POS MAC, steps g) and h): ENC BLOCK2 as upper-case hex characters, the first 8
    (ASCII), for TDES and SM4 alike."""
    return unionpay_pos_mac_stages(alg, key, data)[3].hex().upper()[:8].encode("ascii")


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    """HMAC (RFC 2104; GM/T 0042-2015) over SM3 (GB/T 32905-2016), by pyca: any key length."""
    h = pyca_hmac.HMAC(key, hashes.SM3())
    h.update(data)
    return h.finalize()


def key_sync_mac(alg: str | Enum, zmk: bytes, data: bytes) -> bytes:
    """A key-change notice's MAC as hsmsvc documents it: CMAC (NIST SP 800-38B) under the key
    ECB_ZMK(counter || "hsmsvc/ks-mac/v1", one zero-padded block per counter 1, 2, ...), cut
    to the ZMK's length."""
    bs = primitive(alg, zmk).block_size // 8
    n = -(-len(zmk) // bs)
    blocks = b"".join((bytes([i + 1]) + b"hsmsvc/ks-mac/v1").ljust(bs, b"\x00")[:bs] for i in range(n))
    return cmac(alg, ecb(alg, zmk, blocks)[:len(zmk)], data)


# -- TR-31 key blocks ---------------------------------------------------------------------

# ANSI X9 TR-31:2018 clause 5.3.2: the derivation data's algorithm indicator and length, by the
# KBPK's algorithm and length.
_TR31_KDF = {("TDES", 16): (0x0000, 0x0080), ("TDES", 24): (0x0001, 0x00C0), ("AES", 16): (0x0002, 0x0080),
             ("AES", 24): (0x0003, 0x00C0), ("AES", 32): (0x0004, 0x0100),
             # Not TR-31: hsmsvc's SM4 convention (docs/architecture.md "SM4 key blocks"), version D
             # with SM4 wherever TR-31 says AES, the derivation data as for AES-128.
             ("SM4", 16): (0x0002, 0x0080)}


def _tr31_keys(kbpk: bytes, version: str, sm4: bool = False) -> tuple[str, bytes, bytes]:
    """TR-31:2018 clause 5.3.2.1 (version B, TDES) or 5.3.2.3 (version D, AES): the KBEK and KBAK,
    each CMAC_KBPK(counter || usage 0000 or 0001 || 00 || algorithm || length) for counters 1, 2, ...
    ``sm4``: version D with an SM4 KBPK (the convention above)."""
    alg = "SM4" if sm4 and version == "D" else {"B": "TDES", "D": "AES"}[version]
    indicator, bits = _TR31_KDF[(alg, len(kbpk))]
    out = []
    for usage in (0x0000, 0x0001):
        stream = b""
        counter = 1
        while len(stream) < len(kbpk):
            stream += cmac(alg, kbpk, bytes([counter]) + usage.to_bytes(2, "big") + b"\x00"
                           + indicator.to_bytes(2, "big") + bits.to_bytes(2, "big"))
            counter += 1
        out.append(stream[: len(kbpk)])
    return alg, out[0], out[1]


def tr31_wrap(kbpk: bytes, header: str, key: bytes, pad: bytes, sm4: bool = False) -> str:
    """A TR-31:2018 key block, version B or D (``header[0]``): ``header`` with its length field
    (characters 1-4) set, then hex of CBC_KBEK(IV = MAC; bit length || key || ``pad``), then
    hex of the MAC, CMAC_KBAK(header || bit length || key || pad), 8 bytes (B) or 16 (D)."""
    alg, kbek, kbak = _tr31_keys(kbpk, header[0], sm4)
    bs = 8 if alg == "TDES" else 16
    data = (8 * len(key)).to_bytes(2, "big") + key + pad
    if len(data) % bs:
        raise ValueError("the padding must fill the last block")
    header = f"{header[0]}{len(header) + 2 * len(data) + 2 * bs:04d}{header[5:]}"
    mac = cmac(alg, kbak, header.encode("ascii") + data)[:bs]
    ctx = Cipher(primitive(alg, kbek), modes.CBC(mac)).encryptor()
    return header + (ctx.update(data) + ctx.finalize()).hex().upper() + mac.hex().upper()


def tr31_unwrap(kbpk: bytes, block: str, header_length: int = 16, sm4: bool = False) -> tuple[bytes, bytes]:
    """The clear key and the padding of a version B or D block (:func:`tr31_wrap` undone), its MAC checked;
    ``header_length``: 16 plus any optional blocks' length."""
    alg, kbek, kbak = _tr31_keys(kbpk, block[0], sm4)
    bs = 8 if alg == "TDES" else 16
    header, mac = block[:header_length], bytes.fromhex(block[-2 * bs:])
    body = bytes.fromhex(block[header_length : -2 * bs])
    ctx = Cipher(primitive(alg, kbek), modes.CBC(mac)).decryptor()
    data = ctx.update(body) + ctx.finalize()
    if not hmac.compare_digest(cmac(alg, kbak, header.encode("ascii") + data)[:bs], mac):
        raise ValueError("TR-31 MAC does not verify")
    n = int.from_bytes(data[:2], "big") // 8
    return data[2 : 2 + n], data[2 + n :]


# -- PANs and PIN blocks -----------------------------------------------------------------


def _luhn_sum(digits: str) -> int:
    # Every second digit from the right doubled, a doubled digit over 9 less 9, all summed.
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total


def luhn_valid(number: str) -> bool:
    """Whether ``number`` (ASCII digits) ends in its Luhn check digit (ISO/IEC 7812-1 annex B)."""
    if not number or not all("0" <= c <= "9" for c in number):
        return False
    return _luhn_sum(number) % 10 == 0


def luhn_pan(body: str) -> str:
    """``body`` and its Luhn check digit (ISO/IEC 7812-1 annex B)."""
    return body + str(-_luhn_sum(body + "0") % 10)


def iso0_pan_field(pan: str) -> bytes:
    """The format 0 PAN field (ISO 9564-1:2017 clause 9.3.2): 0000 and the 12 PAN digits before
    the check digit."""
    return bytes.fromhex("0000" + pan[-13:-1])


def iso0(pin: str, pan: str) -> bytes:
    """The ISO 9564-1:2017 format 0 plain block (clause 9.3.2): control 0, the PIN's length, the
    PIN, F fill, XOR the PAN field."""
    pin_field = bytes.fromhex(f"0{len(pin):X}{pin}".ljust(16, "F"))
    return xor(pin_field, iso0_pan_field(pan))


def decode_iso0(block: bytes, pan: str) -> str:
    """The PIN of a format 0 plain block (clause 9.3.2); no checks of control, length or fill."""
    text = xor(block, iso0_pan_field(pan)).hex().upper()
    n = int(text[1], 16)
    return text[2:2 + n]


def iso1(pin: str) -> bytes:
    """An ISO 9564-1:2017 format 1 plain block (clause 9.3.3): control 1, the PIN's length, the
    PIN, random fill; no PAN."""
    fill = "".join(secrets.choice("0123456789ABCDEF") for _ in range(14 - len(pin)))
    return bytes.fromhex(f"1{len(pin):X}{pin}{fill}")


def iso4_pin_field(pin: str, random_half: bytes) -> bytes:
    """The ISO 9564-1:2017 format 4 plain-text PIN field (clause 9.3.6.2): control 4, the PIN's
    length, the PIN, A fill to 8 bytes, then the 8 given random bytes."""
    return bytes.fromhex(f"4{len(pin):X}{pin}".ljust(16, "A")) + random_half


def iso4_pan_field(pan: str) -> bytes:
    """The format 4 plain-text PAN field (clause 9.3.6.3): M (the PAN's length less 12; 0 for a
    PAN right-justified in 12 digits), the PAN, zero fill to 16 bytes."""
    digits = pan.rjust(12, "0")
    return bytes.fromhex((f"{len(digits) - 12:X}" + digits).ljust(32, "0"))


def iso4_encipher(alg: str | Enum, key: bytes, pin_field: bytes, pan: str) -> bytes:
    """Format 4 encipherment (ISO 9564-1:2017 clause 9.3.6.4): E(K, E(K, PIN field) XOR PAN field)."""
    return ecb(alg, key, xor(ecb(alg, key, pin_field), iso4_pan_field(pan)))


def iso4_decipher(alg: str | Enum, key: bytes, block: bytes, pan: str) -> bytes:
    """The plain-text PIN field of a format 4 block: D(K, D(K, block) XOR PAN field)."""
    return ecb(alg, key, xor(ecb(alg, key, block, decrypt=True), iso4_pan_field(pan)), decrypt=True)


# -- PIN verification values ---------------------------------------------------------------


def ibm3624_offset(pvk: bytes, validation_data: str, table: str, pin: str) -> str:
    """The IBM 3624 PIN offset (IBM CCA Basic Services, appendix E): validation data enciphered
    under the PVK, decimalized, the PIN's length of it taken; the offset is PIN less that, digit
    by digit, modulo 10."""
    enc = tdes_ecb(pvk, bytes.fromhex(validation_data)).hex().upper()
    natural = "".join(table[int(c, 16)] for c in enc)[: len(pin)]
    return "".join(str((int(p) - int(n)) % 10) for p, n in zip(pin, natural))


def visa_pvv(pvk: bytes, pan: str, pvki: int, pin: str) -> str:
    """The Visa PVV (IBM CCA "VISA-PVV"): TSP = 11 PAN digits before the check digit, the PVKI and
    the PIN's first 4 digits, enciphered under the PVK; its decimal digits in order, then its
    A-F digits less 10, the first 4."""
    tsp = pan[-12:-1] + str(pvki) + pin[:4]
    enc = tdes_ecb(pvk, bytes.fromhex(tsp)).hex().upper()
    digits = [c for c in enc if c.isdigit()]
    digits += [str(int(c, 16) - 10) for c in enc if not c.isdigit()]
    return "".join(digits[:4])


def pin_digest(psk: bytes, account: str, pin: str) -> bytes:
    """HMAC-SHA256 (RFC 2104) over the length-prefixed (label, account, PIN) of hsmsvc's documented
    format (bank design 004 clause 6.2.4), computed with the standard library."""
    msg = b"".join(len(x).to_bytes(1, "big") + x for x in (b"hsmsvc/pin-digest/v1", account.encode(), pin.encode()))
    return hmac.new(psk, msg, "sha256").digest()


# -- fields and key transport --------------------------------------------------------------


def aes_gcm_decrypt(key: bytes, iv: bytes, data: bytes, aad: bytes) -> bytes:
    """AES-GCM (NIST SP 800-38D) decryption of ciphertext || 16-byte tag, by pyca."""
    d = Cipher(algorithms.AES(key), modes.GCM(iv, data[-16:])).decryptor()
    d.authenticate_additional_data(aad)
    return d.update(data[:-16]) + d.finalize()


def aes_cbc_pkcs7_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-CBC (NIST SP 800-38A) decryption, PKCS #7 padding (RFC 5652 clause 6.3) removed."""
    d = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    out = d.update(data) + d.finalize()
    return out[: -out[-1]]


def rsa_oaep_wrap(spki: bytes, key: bytes) -> bytes:
    """A terminal wrapping its one-time key: RSAES-OAEP (RFC 8017 clause 7.1), SHA-256 and
    MGF1-SHA-256, empty label."""
    pub = serialization.load_der_public_key(spki)
    assert isinstance(pub, rsa.RSAPublicKey)
    return pub.encrypt(key, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))


def sm2_wrap(spki: bytes, key: bytes) -> bytes:
    """The same with SM2 encryption (GB/T 32918.4-2016), by the OpenSSL command line: SM2Cipher DER
    (GB/T 35276-2017)."""
    with tempfile.TemporaryDirectory() as d:
        Path(d, "pub.der").write_bytes(spki)
        Path(d, "k.bin").write_bytes(key)
        subprocess.run(["openssl", "pkeyutl", "-encrypt", "-pubin", "-keyform", "DER", "-inkey", "pub.der",
                        "-in", "k.bin", "-out", "ct.der"], cwd=d, check=True, capture_output=True)
        return Path(d, "ct.der").read_bytes()


def sha256(data: bytes) -> bytes:
    """SHA-256 (FIPS 180-4), by the standard library."""
    return hashlib.sha256(data).digest()


# Elliptic-curve references (key agreement, ECIES, SM2), kept in their own module for size.
from tests.reference_ec import *  # noqa: E402,F403
# Card references (the CVV method, EMV card and session keys, cryptograms), in their own module for size.
from tests.reference_cards import *  # noqa: E402,F403
