"""Independent computations for the end-to-end tests, with pyca/cryptography only.

Nothing here imports hsmsvc: each result the server returns is checked against
what these functions compute from the clear keys the tests formed.
"""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import tempfile
import warnings
from pathlib import Path

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import cmac as pyca_cmac
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def _alg(key: bytes) -> TripleDES:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if len(key) == 8:
            return TripleDES(key * 3)
        if len(key) == 16:
            return TripleDES(key + key[:8])
        return TripleDES(key)


def tdes_ecb(key: bytes, data: bytes, decrypt: bool = False) -> bytes:
    c = Cipher(_alg(key), modes.ECB())
    ctx = c.decryptor() if decrypt else c.encryptor()
    return ctx.update(data) + ctx.finalize()


def aes_ecb(key: bytes, data: bytes) -> bytes:
    e = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return e.update(data) + e.finalize()


def luhn_pan(body: str) -> str:
    """``body`` and its Luhn check digit (ISO/IEC 7812-1 annex B), computed here, not by hsmsvc."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        n = int(ch) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return body + str((10 - total % 10) % 10)


def iso0(pin: str, pan: str) -> bytes:
    """ISO 9564-1 format 0 clear block."""
    pin_field = bytes.fromhex(f"0{len(pin):X}{pin}".ljust(16, "F"))
    pan_field = bytes.fromhex("0000" + pan[-13:-1])
    return bytes(a ^ b for a, b in zip(pin_field, pan_field))


def decode_iso0(block: bytes, pan: str) -> str:
    pan_field = bytes.fromhex("0000" + pan[-13:-1])
    text = bytes(a ^ b for a, b in zip(block, pan_field)).hex().upper()
    n = int(text[1], 16)
    return text[2:2 + n]


def ibm3624_offset(pvk: bytes, validation_data: str, table: str, pin: str) -> str:
    enc = tdes_ecb(pvk, bytes.fromhex(validation_data)).hex().upper()
    natural = "".join(table[int(c, 16)] for c in enc)[: len(pin)]
    return "".join(str((int(p) - int(n)) % 10) for p, n in zip(pin, natural))


def visa_pvv(pvk: bytes, pan: str, pvki: int, pin: str) -> str:
    tsp = pan[-12:-1] + str(pvki) + pin[:4]
    enc = tdes_ecb(pvk, bytes.fromhex(tsp)).hex().upper()
    digits = [c for c in enc if c.isdigit()]
    digits += [str(int(c, 16) - 10) for c in enc if not c.isdigit()]
    return "".join(digits[:4])


def retail_mac(key: bytes, data: bytes) -> bytes:
    """ISO 9797-1 MAC algorithm 3, padding method 1, two-key TDES (ANSI X9.19)."""
    data = data + b"\x00" * (-len(data) % 8)
    k1, k2 = key[:8], key[8:16]
    e = Cipher(_alg(k1), modes.CBC(bytes(8))).encryptor()
    last = (e.update(data) + e.finalize())[-8:]
    return tdes_ecb(k1, tdes_ecb(k2, last, decrypt=True))


def aes_cmac(key: bytes, data: bytes) -> bytes:
    c = pyca_cmac.CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def pin_digest(psk: bytes, account: str, pin: str) -> bytes:
    """HMAC-SHA256 over the length-prefixed (label, account, PIN) of hsmsvc's documented format."""
    msg = b"".join(len(x).to_bytes(1, "big") + x for x in (b"hsmsvc/pin-digest/v1", account.encode(), pin.encode()))
    return hmac.new(psk, msg, "sha256").digest()


def aes_gcm_decrypt(key: bytes, iv: bytes, data: bytes, aad: bytes) -> bytes:
    d = Cipher(algorithms.AES(key), modes.GCM(iv, data[-16:])).decryptor()
    d.authenticate_additional_data(aad)
    return d.update(data[:-16]) + d.finalize()


def aes_cbc_pkcs7_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    d = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    out = d.update(data) + d.finalize()
    return out[: -out[-1]]


def rsa_oaep_wrap(spki: bytes, key: bytes) -> bytes:
    """A terminal wrapping its one-time key: RSAES-OAEP, SHA-256 and MGF1-SHA-256."""
    pub = serialization.load_der_public_key(spki)
    assert isinstance(pub, rsa.RSAPublicKey)
    return pub.encrypt(key, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))


def sm2_wrap(spki: bytes, key: bytes) -> bytes:
    """The same with SM2, by the OpenSSL command line (SM2Cipher DER)."""
    with tempfile.TemporaryDirectory() as d:
        Path(d, "pub.der").write_bytes(spki)
        Path(d, "k.bin").write_bytes(key)
        subprocess.run(["openssl", "pkeyutl", "-encrypt", "-pubin", "-keyform", "DER", "-inkey", "pub.der",
                        "-in", "k.bin", "-out", "ct.der"], cwd=d, check=True, capture_output=True)
        return Path(d, "ct.der").read_bytes()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
