"""A PIN from a terminal with no HSM (bank design 004 clause 5.2.4(2)), end to end over mTLS.

The terminal fetches the KTK's public key, enciphers its PIN block under a
fresh one-time key and wraps that key under the public key, with pyca (RSA) or
the OpenSSL command line (SM2). The core then translates or verifies it.
"""

from __future__ import annotations

import secrets

import pytest

from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import pin_service_pb2 as pin_pb
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client import Client
from tests import reference as ind
import grpc

from tests.api.conftest import Env, code_of, template

StatusCode = grpc.StatusCode

PAN = "6222021234567890128"


@pytest.fixture(scope="session")
def ktks(server: Env) -> dict[str, key_pb.GetPublicKeyResponse]:
    mgr = server.client("key-manager")
    out = {}
    for name, alg in (("ktk-rsa", pb.ALGORITHM_RSA_2048), ("ktk-sm2", pb.ALGORITHM_SM2)):
        r = mgr.keys.GenerateKey(key_pb.GenerateKeyRequest(template=template(
            name, pb.KEY_TYPE_KTK, alg, pb.KEY_USAGE_ASYMMETRIC_KEY_WRAPPING, pb.MODE_OF_USE_DECRYPT_ONLY)))
        pub = mgr.keys.GetPublicKey(key_pb.GetPublicKeyRequest(key=pb.KeyRef(key_id=name)))
        assert pub.algorithm == alg and pub.key_id == name and pub.version == 1
        assert pub.fingerprint == r.key.kcv and len(pub.fingerprint) == 8
        out[name] = pub
    return out


def one_time(pub: key_pb.GetPublicKeyResponse, key: bytes, alg: int = pb.ALGORITHM_TDES_2KEY) -> pin_pb.OneTimeKey:
    wrap = ind.sm2_wrap if pub.algorithm == pb.ALGORITHM_SM2 else ind.rsa_oaep_wrap
    return pin_pb.OneTimeKey(transport_key=pb.KeyRef(key_id=pub.key_id), algorithm=alg,
                             wrapped_key=wrap(pub.public_key, key))


def tdes_key() -> bytes:
    k = secrets.token_bytes(16)
    return k if k[:8] != k[8:] else tdes_key()


def test_rsa_fingerprint_is_sha256_of_the_public_key(
    server: Env, ktks: dict[str, key_pb.GetPublicKeyResponse]
) -> None:
    pub = ktks["ktk-rsa"]
    assert pub.fingerprint == ind.sha256(pub.public_key)[:8]
    # Operators (the front-end that publishes it) and auditors may read it too.
    for who in ("core-banking", "auditor"):
        assert server.client(who).get_public_key("ktk-rsa") == (pub.public_key, pub.fingerprint)


@pytest.mark.parametrize("name", ["ktk-rsa", "ktk-sm2"])
def test_terminal_pin_translates_to_a_zpk(
    core: Client, keys: dict[str, bytes], ktks: dict[str, key_pb.GetPublicKeyResponse], name: str
) -> None:
    one = tdes_key()
    r = core.pins.TranslatePin(pin_pb.TranslatePinRequest(
        source_one_time_key=one_time(ktks[name], one), source_format=pb.PIN_BLOCK_FORMAT_ISO_0,
        destination_key=pb.KeyRef(key_id="zpk2"), destination_format=pb.PIN_BLOCK_FORMAT_ISO_0,
        pin_block=ind.tdes_ecb(one, ind.iso0("135790", PAN)), pan=PAN))
    assert ind.decode_iso0(ind.tdes_ecb(keys["zpk2"], r.pin_block, decrypt=True), PAN) == "135790"


def test_terminal_pin_verifies_against_the_stored_pin(
    core: Client, keys: dict[str, bytes], ktks: dict[str, key_pb.GetPublicKeyResponse]
) -> None:
    account = "6222021234567894"
    stored = ind.pin_digest(keys["psk"], account, "802211")
    check = pin_pb.StoredPinCheck(psk=pb.KeyRef(key_id="psk-digest"), account=account,
                                  method=pb.STORED_PIN_METHOD_DIGEST, stored_pin=stored)

    def verify(pin: str, name: str) -> bool:
        one = tdes_key()
        return bool(core.pins.VerifyPin(pin_pb.VerifyPinRequest(
            one_time_key=one_time(ktks[name], one), format=pb.PIN_BLOCK_FORMAT_ISO_0,
            pin_block=ind.tdes_ecb(one, ind.iso0(pin, PAN)), pan=PAN, stored=check)).verified)

    assert verify("802211", "ktk-sm2")
    assert verify("802211", "ktk-rsa")
    assert not verify("802212", "ktk-rsa")
    assert verify("802211", "ktk-rsa")  # a success clears the card's count


def test_a_bad_wrap_is_the_one_pin_block_error_and_counts(
    core: Client, ktks: dict[str, key_pb.GetPublicKeyResponse], keys: dict[str, bytes]
) -> None:
    pan = "6222029999999999992"
    one = tdes_key()
    good = one_time(ktks["ktk-rsa"], one)
    tampered = pin_pb.OneTimeKey()
    tampered.CopyFrom(good)
    tampered.wrapped_key = good.wrapped_key[:-1] + bytes([good.wrapped_key[-1] ^ 1])
    short = one_time(ktks["ktk-rsa"], one[:15])

    def translate(k: pin_pb.OneTimeKey, block: bytes) -> None:
        core.pins.TranslatePin(pin_pb.TranslatePinRequest(
            source_one_time_key=k, source_format=pb.PIN_BLOCK_FORMAT_ISO_0,
            destination_key=pb.KeyRef(key_id="zpk2"), destination_format=pb.PIN_BLOCK_FORMAT_ISO_0,
            pin_block=block, pan=pan))

    block = ind.tdes_ecb(one, ind.iso0("1234", pan))
    for k in (tampered, short, good):
        b = block if k is not good else ind.tdes_ecb(one, bytes.fromhex("0C1234FFFFFFFFFF"))
        code, msg = code_of(translate, k, b)
        assert (code, msg) == (StatusCode.INVALID_ARGUMENT, "pin_block: PIN block invalid")
    # Three faults on this card (the PAN field the blocks bind): its next verification against
    # that field, even of the right PIN, is refused.
    check = pin_pb.Ibm3624Check(pvk=pb.KeyRef(key_id="pvk-ibm"), validation_data="1234567890123445",
                                offset="0000")
    code, msg = code_of(core.pins.VerifyPin, pin_pb.VerifyPinRequest(
        one_time_key=one_time(ktks["ktk-sm2"], one), format=pb.PIN_BLOCK_FORMAT_ISO_0,
        pin_block=block, pan=pan, ibm3624=check))
    assert code is StatusCode.RESOURCE_EXHAUSTED and pan not in msg


def test_one_time_key_errors_name_their_field(
    server: Env, core: Client, ktks: dict[str, key_pb.GetPublicKeyResponse]
) -> None:
    one = tdes_key()

    def translate(k: pin_pb.OneTimeKey) -> None:
        core.pins.TranslatePin(pin_pb.TranslatePinRequest(
            source_one_time_key=k, source_format=pb.PIN_BLOCK_FORMAT_ISO_0,
            destination_key=pb.KeyRef(key_id="zpk2"), destination_format=pb.PIN_BLOCK_FORMAT_ISO_0,
            pin_block=bytes(8), pan=PAN))

    k = one_time(ktks["ktk-rsa"], one)
    for not_a_cipher in (pb.ALGORITHM_SM2, pb.ALGORITHM_HMAC_SM3_256):  # an HMAC-only key is 32 bytes, as AES-256
        k.algorithm = not_a_cipher
        assert code_of(translate, k) == (StatusCode.INVALID_ARGUMENT,
                                         "source_one_time_key.algorithm: a block cipher (TDES, AES or SM4)")
    k.algorithm = pb.ALGORITHM_AES_256
    code, msg = code_of(translate, k)
    assert code is StatusCode.FAILED_PRECONDITION and "stronger than the KTK" in msg
    k.algorithm = pb.ALGORITHM_UNSPECIFIED
    assert code_of(translate, k) == (StatusCode.INVALID_ARGUMENT, "source_one_time_key.algorithm: required")
    k = one_time(ktks["ktk-rsa"], one)
    k.transport_key.key_id = "zpk1"
    code, msg = code_of(translate, k)
    assert code is StatusCode.FAILED_PRECONDITION and msg.startswith("source_one_time_key.transport_key")
    k.transport_key.key_id = "no-such-ktk"
    code, msg = code_of(translate, k)
    assert code is StatusCode.NOT_FOUND and msg.startswith("source_one_time_key.transport_key")
    code, _ = code_of(core.keys.GetPublicKey, key_pb.GetPublicKeyRequest(key=pb.KeyRef(key_id="zpk1")))
    assert code is StatusCode.FAILED_PRECONDITION
    # The KTK's private half never leaves, not even to a manager.
    code, _ = code_of(server.client("key-manager").keys.ExportKey, key_pb.ExportKeyRequest(
        kek=pb.KeyRef(key_id="zmk-core"), key=pb.KeyRef(key_id="ktk-rsa")))
    assert code is StatusCode.FAILED_PRECONDITION
    # A branch whose policy does not name the KTK may not use it, nor learn that it exists.
    code, _ = code_of(server.client("branch-0001").pins.TranslatePin, pin_pb.TranslatePinRequest(
        source_one_time_key=one_time(ktks["ktk-rsa"], one), source_format=pb.PIN_BLOCK_FORMAT_ISO_0,
        destination_key=pb.KeyRef(key_id="branch-0001.zpk"), destination_format=pb.PIN_BLOCK_FORMAT_ISO_0,
        pin_block=bytes(8), pan=PAN))
    assert code is StatusCode.NOT_FOUND  # answered as a missing key (issue 27)
