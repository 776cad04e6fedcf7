"""Issue 30: a partner's keys in TR-31 version D blocks under an AES-256 KBPK, end to end.

The KBPK is formed from three custodians' components with ``hsmsvc ceremony key form`` at the
backend (offline: no CTK, whose 128-bit strength could not carry it), before the server starts.
Each working key is then wrapped by the test as the partner's HSM would, with tests/reference.py
``tr31_wrap`` (pyca; pinned to the TR-31:2018 annex A.7.2.2, A.7.3.2 and A.7.4 examples in
tests/test_reference.py), imported through the SDK with its KCV stated, and its returned KCV held
to the one computed here (ANSI X9.24-1:2017: AES, CMAC of a zero block; TDES, encipherment of
zeros). An export comes back as a D block that ``tr31_unwrap`` opens to the same key.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from hsmsvc_client.v1 import key_service_pb2 as key_pb
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client import Client, ClientError, ClientTls
from tests import reference as ref
from tests.api.conftest import PASSPHRASE, POLICY, code_of, launch, seal_lmk, stop, template
from tools.bench.pki import ThrowawayCA

KBPK_ID = "zmk-partner-7"
ZONE = "partner-7"
B, C = pb.MODE_OF_USE_ENCRYPT_DECRYPT, pb.MODE_OF_USE_MAC_GENERATE_VERIFY
# The TR-31 header algorithm byte and padding (to the 16-byte block of version D) of each key size.
SIZES = {"AES_128": ("A", 16), "AES_192": ("A", 24), "AES_256": ("A", 32), "TDES_2KEY": ("T", 16),
         "TDES_3KEY": ("T", 24)}


@dataclass(frozen=True)
class Site:
    client: Client
    kbpk: bytes
    dir: Path
    sealed: Path
    store: str


def _hsmsvc(*args: str, answers: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HSMSVC_TEST_LMK_PASSPHRASE": PASSPHRASE}
    return subprocess.run([sys.executable, "-m", "hsmsvc", *args], input="\n".join(answers) + "\n", text=True,
                          capture_output=True, timeout=120, env=env)


def _form_args(sealed: Path, store: str, key_id: str, algorithm: str = "AES_256") -> tuple[str, ...]:
    return ("ceremony", "key", "form", "--sealed", str(sealed), "--passphrase-env", "HSMSVC_TEST_LMK_PASSPHRASE",
            "--store", store, "--key-id", key_id, "--key-type", "ZMK", "--algorithm", algorithm, "--usage", "K1",
            "--zone", ZONE, "--custodian", "ann", "--custodian", "bob", "--custodian", "cy", "--officer", "olga")


def _typed(alg: str, parts: list[bytes]) -> list[str]:
    """Each custodian's component, then the KCV on their mailer."""
    return [line for p in parts for line in (p.hex().upper(), ref.kcv(alg, p).hex().upper())]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    d = tmp_path_factory.mktemp("partner")
    ca = ThrowawayCA(d)
    manager = ca.issue("key-manager")
    srv = ca.issue("hsmsvc-server", server=True)
    sealed = seal_lmk(d)
    (d / "policy.toml").write_text(POLICY)
    store = f"sqlite:///{d / 'keys.db'}"
    parts = [secrets.token_bytes(32) for _ in range(3)]
    r = _hsmsvc(*_form_args(sealed, store, KBPK_ID), answers=_typed("AES_256", parts))
    assert r.returncode == 0, r.stderr
    kbpk = ref.xor(*parts)
    # The ceremony's KCV is the one pyca's CMAC gives for the XOR of the components (X9.24-1:2017).
    assert f"KCV {ref.kcv('AES_256', kbpk).hex().upper()}" in r.stdout
    proc, info = launch(d, store, sealed, srv, ca)
    client = Client(f"127.0.0.1:{info['port']}", ClientTls(ca.ca_file, manager.cert, manager.key, "localhost"))
    try:
        yield Site(client, kbpk, d, sealed, store)
    finally:
        client.close()
        stop(proc, d / "server.log")


def _block(kbpk: bytes, *, usage: str, alg: str, mode: str, key: bytes, exportability: str = "N") -> str:
    letter, length = SIZES[alg]
    assert len(key) == length
    pad = secrets.token_bytes(-(2 + len(key)) % 16)
    return ref.tr31_wrap(kbpk, f"D0000{usage}{letter}{mode}00{exportability}0000", key, pad)


def _import(site: Site, block: str, t: key_pb.KeyTemplate, kcv: bytes) -> key_pb.ImportKeyResponse:
    return site.client.keys.ImportKey(key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id=KBPK_ID), wrapped_key=block.encode("ascii"), kcv=kcv, template=t))


def test_kbpk_is_bound_as_a_ceremony_zmk(site: Site) -> None:
    info = site.client.keys.GetKey(key_pb.GetKeyRequest(key=pb.KeyRef(key_id=KBPK_ID))).key
    assert (info.key_type, info.algorithm, info.usage, info.mode_of_use, info.exportability, info.zone) == (
        pb.KEY_TYPE_ZMK, pb.ALGORITHM_AES_256, pb.KEY_USAGE_KBPK, B, pb.EXPORTABILITY_NON_EXPORTABLE, ZONE)
    assert info.kcv[:3] == ref.kcv("AES_256", site.kbpk)


def test_working_keys_in_d_blocks_import_with_their_kcvs(site: Site) -> None:
    plan = [(f"dek-{i}", pb.KEY_TYPE_DEK, "AES_256", pb.KEY_USAGE_DATA, "D0", "B") for i in range(10)]
    plan += [("zpk-a128", pb.KEY_TYPE_ZPK, "AES_128", pb.KEY_USAGE_PIN_ENCRYPTION, "P0", "B"),
             ("mak-a192", pb.KEY_TYPE_MAK, "AES_192", pb.KEY_USAGE_MAC_CMAC, "M6", "C"),
             ("zpk-t2", pb.KEY_TYPE_ZPK, "TDES_2KEY", pb.KEY_USAGE_PIN_ENCRYPTION, "P0", "B"),
             ("dek-t3", pb.KEY_TYPE_DEK, "TDES_3KEY", pb.KEY_USAGE_DATA, "D0", "B")]
    for key_id, kt, alg, usage, usage_code, mode in plan:
        clear = secrets.token_bytes(SIZES[alg][1])
        if alg.startswith("TDES"):
            clear = ref.odd_parity(clear)
        want = ref.kcv(alg, clear)
        block = _block(site.kbpk, usage=usage_code, alg=alg, mode=mode, key=clear)
        r = _import(site, block, template(key_id, kt, getattr(pb, f"ALGORITHM_{alg}"), usage,
                                          B if mode == "B" else C, zone=ZONE), want)
        assert r.key.key_id == key_id and r.key.state == pb.KEY_STATE_ACTIVE
        assert r.key.kcv[:3] == want, key_id


def test_export_is_a_d_block_the_partner_opens(site: Site) -> None:
    clear = secrets.token_bytes(32)
    block = _block(site.kbpk, usage="D0", alg="AES_256", mode="B", key=clear, exportability="E")
    t = template("dek-out", pb.KEY_TYPE_DEK, pb.ALGORITHM_AES_256, pb.KEY_USAGE_DATA, B, zone=ZONE)
    t.exportability = pb.EXPORTABILITY_EXPORTABLE
    _import(site, block, t, ref.kcv("AES_256", clear))
    out = site.client.keys.ExportKey(key_pb.ExportKeyRequest(kek=pb.KeyRef(key_id=KBPK_ID),
                                                             key=pb.KeyRef(key_id="dek-out")))
    text = out.wrapped_key.decode("ascii")
    assert text[0] == "D" and text[5:9] == "D0AB"
    key, _ = ref.tr31_unwrap(site.kbpk, text)
    assert key == clear
    assert out.kcv[:3] == ref.kcv("AES_256", clear)


def test_a_flipped_byte_and_a_wrong_kbpk_get_one_generic_error(site: Site) -> None:
    clear = secrets.token_bytes(32)
    block = _block(site.kbpk, usage="D0", alg="AES_256", mode="B", key=clear)
    i = 16 + 10  # a hex digit of the enciphered key field
    flipped = block[:i] + ("0" if block[i] != "0" else "1") + block[i + 1:]
    other = _block(secrets.token_bytes(32), usage="D0", alg="AES_256", mode="B", key=clear)
    mac = block[:-1] + ("0" if block[-1] != "0" else "1")
    t = template("dek-bad", pb.KEY_TYPE_DEK, pb.ALGORITHM_AES_256, pb.KEY_USAGE_DATA, B, zone=ZONE)
    seen = {code_of(_import, site, b, t, ref.kcv("AES_256", clear)) for b in (flipped, other, mac)}
    assert len(seen) == 1, seen
    (code, message), = seen
    assert code is grpc.StatusCode.INVALID_ARGUMENT, (code, message)
    with pytest.raises(ClientError):
        site.client.keys.GetKey(key_pb.GetKeyRequest(key=pb.KeyRef(key_id="dek-bad")))


def test_an_aes_256_key_under_an_aes_128_kbpk_is_refused(site: Site) -> None:
    """X9.24-1: a key is never carried by a weaker one, whatever the block says."""
    parts = [secrets.token_bytes(16) for _ in range(3)]
    r = _hsmsvc(*_form_args(site.sealed, site.store, "zmk-partner-weak", "AES_128"),
                answers=_typed("AES_128", parts))
    assert r.returncode == 0, r.stderr
    clear = secrets.token_bytes(32)
    block = _block(ref.xor(*parts), usage="D0", alg="AES_256", mode="B", key=clear)
    code, message = code_of(site.client.keys.ImportKey, key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id="zmk-partner-weak"), wrapped_key=block.encode(), kcv=ref.kcv("AES_256", clear),
        template=template("dek-weak", pb.KEY_TYPE_DEK, pb.ALGORITHM_AES_256, pb.KEY_USAGE_DATA, B, zone=ZONE)))
    assert code is grpc.StatusCode.FAILED_PRECONDITION or code is grpc.StatusCode.PERMISSION_DENIED, message
    assert message.startswith("kek: weaker"), message


def test_the_ceremony_journal_and_audit_name_the_custodians(site: Site) -> None:
    lines = [json.loads(x) for x in Path(str(site.sealed) + ".ceremony.log").read_text().splitlines()]
    done = [x for x in lines if x["action"] == "key.form" and x["key_id"] == KBPK_ID]
    assert len(done) == 1 and done[0]["custodians"] == "ann,bob,cy" and done[0]["officer"] == "olga"
    assert done[0]["key_kcv"] == ref.kcv("AES_256", site.kbpk).hex().upper()


def test_a_component_that_misses_its_kcv_leaves_no_key(site: Site) -> None:
    """All or nothing: the third custodian's component fails the mailer's KCV three times."""
    parts = [secrets.token_bytes(32) for _ in range(3)]
    answers = _typed("AES_256", parts[:2]) + [parts[2].hex(), "000000"] * 3
    r = _hsmsvc(*_form_args(site.sealed, site.store, "zmk-partner-never"), answers=answers)
    assert r.returncode != 0 and "component 3" in r.stderr, r.stderr
    code, _ = code_of(site.client.keys.GetKey, key_pb.GetKeyRequest(key=pb.KeyRef(key_id="zmk-partner-never")))
    assert code is grpc.StatusCode.NOT_FOUND
    lines = [json.loads(x) for x in Path(str(site.sealed) + ".ceremony.log").read_text().splitlines()]
    assert lines[-1]["action"] == "zmk-form.abandoned" and "component 3" in lines[-1]["reason"]


def test_a_key_id_in_use_is_refused_before_anyone_types(site: Site) -> None:
    r = _hsmsvc(*_form_args(site.sealed, site.store, KBPK_ID), answers=[])
    assert r.returncode != 0 and "key_id" in r.stderr and "component" not in r.stdout, (r.stdout, r.stderr)


@pytest.mark.parametrize(("alg", "usage_code", "mode", "pb_alg", "expected"), [
    ("AES_256", "D0", "B", pb.ALGORITHM_TDES_2KEY,
     "key_block: header algorithm A (AES) differs from the template's TDES_2KEY"),
    ("AES_256", "D0", "B", pb.ALGORITHM_AES_128, "key_block: carries a 256-bit key, not the template's AES_128"),
    ("AES_256", "D0", "E", pb.ALGORITHM_AES_256, "key_block: header mode of use E differs from the template's B"),
    ("AES_256", "P0", "B", pb.ALGORITHM_AES_256, "key_block: header key usage P0 differs from the template's D0"),
])
def test_a_template_that_disagrees_with_an_authentic_header_names_the_field(
        site: Site, alg: str, usage_code: str, mode: str, pb_alg: int, expected: str) -> None:
    """The header is clear text and the MAC has verified: the field that disagrees is named, unlike
    a wrong KBPK or a forged block (test_a_flipped_byte_and_a_wrong_kbpk_get_one_generic_error)."""
    block = _block(site.kbpk, usage=usage_code, alg=alg, mode=mode, key=secrets.token_bytes(32))
    t = template("dek-mismatch", pb.KEY_TYPE_DEK, pb_alg, pb.KEY_USAGE_DATA, B, zone=ZONE)
    code, message = code_of(_import, site, block, t, b"")
    assert code is grpc.StatusCode.FAILED_PRECONDITION
    assert message.startswith(expected), message


def test_every_missing_template_field_is_named_at_once(site: Site) -> None:
    code, message = code_of(site.client.keys.GenerateKey, key_pb.GenerateKeyRequest(
        template=key_pb.KeyTemplate(key_id="dek-incomplete", zone=ZONE)))
    assert (code, message) == (grpc.StatusCode.INVALID_ARGUMENT, "template: required fields missing: key_type, "
                               "algorithm, usage, mode_of_use, exportability")
    t = template("dek-incomplete", pb.KEY_TYPE_DEK, pb.ALGORITHM_AES_256, pb.KEY_USAGE_DATA, B, zone=ZONE)
    t.ClearField("usage")
    code, message = code_of(_import, site, "D0000", t, b"")
    assert (code, message) == (grpc.StatusCode.INVALID_ARGUMENT, "template.usage: required")


# -- issue 30: the algorithm from the block's header; the KCV's method ------------------------------

@pytest.mark.parametrize("alg", ["TDES_2KEY", "TDES_3KEY", "AES_128", "AES_256"])
def test_an_unset_algorithm_is_the_verified_headers(site: Site, alg: str) -> None:
    """TR-31:2018 table 1: T with a 16- or 24-byte key is TDES_2KEY or TDES_3KEY, A with 16 or 32
    bytes AES_128 or AES_256; the KCV (X9.24-1:2017, tests/reference.py) is held to the key."""
    clear = secrets.token_bytes(SIZES[alg][1])
    if alg.startswith("TDES"):
        clear = ref.odd_parity(clear)
    block = _block(site.kbpk, usage="P0", alg=alg, mode="B", key=clear)
    t = template(f"zpk-from-header-{alg.lower()}", pb.KEY_TYPE_ZPK, pb.ALGORITHM_AES_256,
                 pb.KEY_USAGE_PIN_ENCRYPTION, B, zone=ZONE)
    t.ClearField("algorithm")
    r = _import(site, block, t, ref.kcv(alg, clear))
    assert r.key.algorithm == getattr(pb, f"ALGORITHM_{alg}")
    assert r.key.kcv[:3] == ref.kcv(alg, clear)
    got = site.client.keys.GetKey(key_pb.GetKeyRequest(key=pb.KeyRef(key_id=t.key_id))).key
    assert got.algorithm == getattr(pb, f"ALGORITHM_{alg}") and got.kcv == r.key.kcv


def test_an_unset_algorithm_still_gets_the_header_checks(site: Site) -> None:
    """The header's usage still has to match the template, and an HMAC key's H gives no size."""
    block = _block(site.kbpk, usage="D0", alg="AES_128", mode="B", key=secrets.token_bytes(16))
    t = template("zpk-from-header-bad", pb.KEY_TYPE_ZPK, 0, pb.KEY_USAGE_PIN_ENCRYPTION, B, zone=ZONE)
    code, message = code_of(_import, site, block, t, b"")
    assert code is grpc.StatusCode.FAILED_PRECONDITION
    assert message.startswith("key_block: header key usage D0 differs from the template's P0"), message
    t = template("psk-from-header", pb.KEY_TYPE_PSK, 0, pb.KEY_USAGE_MAC_HMAC, C, zone=ZONE)
    code, message = code_of(_import, site, block, t, b"")
    assert (code, message) == (grpc.StatusCode.INVALID_ARGUMENT,
                               "template.algorithm: required for an HMAC key (header algorithm H gives no size)")


def test_a_legacy_k0_import_still_requires_the_algorithm(server: Any) -> None:
    """A legacy form binds no algorithm: under the K0 zmk-core (tests/api/conftest.py) it is required."""
    mgr = server.client("key-manager")
    t = template("zpk-k0-no-alg", pb.KEY_TYPE_ZPK, 0, pb.KEY_USAGE_PIN_ENCRYPTION, B)
    code, message = code_of(mgr.keys.ImportKey, key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id="zmk-core"), wrapped_key=secrets.token_bytes(16), template=t))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert message.startswith("template.algorithm: required under a K0 KEK"), message


# AESAVS (NIST, 2002) Appendix B.2 KeySbox AES-128 vector 0: this key enciphers the zero block to
# 6d251e69..., so its legacy ECB-form KCV is 6D251E (tests/test_reference.py pins the reference).
AESAVS_KEY = bytes.fromhex("10a58869d74be5a374cf867cfb473859")


def test_an_aes_kcv_in_the_ecb_form_is_taken_with_kcv_method(site: Site) -> None:
    ecb, cmac = ref.aes_ecb_kcv(AESAVS_KEY), ref.kcv("AES_128", AESAVS_KEY)
    assert ecb == bytes.fromhex("6D251E")
    block = _block(site.kbpk, usage="P0", alg="AES_128", mode="B", key=AESAVS_KEY, exportability="E")
    t = template("zpk-ecb-kcv", pb.KEY_TYPE_ZPK, pb.ALGORITHM_AES_128, pb.KEY_USAGE_PIN_ENCRYPTION, B, zone=ZONE)
    t.exportability = pb.EXPORTABILITY_EXPORTABLE
    # The ECB form stated without kcv_method: refused, naming the method it was held to.
    code, message = code_of(_import, site, block, t, ecb)
    assert (code, message) == (grpc.StatusCode.INVALID_ARGUMENT, "kcv: does not match the imported key "
                               "(CMAC method; set kcv_method for the ECB form)")
    r = site.client.keys.ImportKey(key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id=KBPK_ID), wrapped_key=block.encode("ascii"), kcv=ecb, template=t,
        kcv_method=pb.KCV_METHOD_ECB))
    # KeyInfo keeps X9.24-1:2017's form and says so.
    assert (r.key.kcv, r.key.kcv_method) == (cmac, pb.KCV_METHOD_CMAC)
    ref_ = pb.KeyRef(key_id="zpk-ecb-kcv")
    for method, want in ((pb.KCV_METHOD_UNSPECIFIED, cmac), (pb.KCV_METHOD_CMAC, cmac), (pb.KCV_METHOD_ECB, ecb)):
        got = site.client.keys.GetKeyCheckValue(key_pb.GetKeyCheckValueRequest(key=ref_, kcv_method=method))
        assert got.kcv == want, method
    out = site.client.keys.ExportKey(key_pb.ExportKeyRequest(kek=pb.KeyRef(key_id=KBPK_ID), key=ref_,
                                                             kcv_method=pb.KCV_METHOD_ECB))
    assert out.kcv == ecb and ref.tr31_unwrap(site.kbpk, out.wrapped_key.decode("ascii"))[0] == AESAVS_KEY


def test_a_cmac_kcv_stated_as_ecb_names_the_ecb_method(site: Site) -> None:
    block = _block(site.kbpk, usage="P0", alg="AES_128", mode="B", key=AESAVS_KEY)
    t = template("zpk-ecb-wrong", pb.KEY_TYPE_ZPK, pb.ALGORITHM_AES_128, pb.KEY_USAGE_PIN_ENCRYPTION, B, zone=ZONE)
    code, message = code_of(site.client.keys.ImportKey, key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id=KBPK_ID), wrapped_key=block.encode("ascii"), kcv=ref.kcv("AES_128", AESAVS_KEY),
        template=t, kcv_method=pb.KCV_METHOD_ECB))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert message.startswith("kcv: does not match the imported key (ECB method"), message


def test_a_tdes_key_has_no_cmac_kcv(site: Site) -> None:
    clear = ref.odd_parity(secrets.token_bytes(16))
    block = _block(site.kbpk, usage="P0", alg="TDES_2KEY", mode="B", key=clear)
    t = template("zpk-tdes-cmac", pb.KEY_TYPE_ZPK, pb.ALGORITHM_TDES_2KEY, pb.KEY_USAGE_PIN_ENCRYPTION, B,
                 zone=ZONE)
    code, message = code_of(site.client.keys.ImportKey, key_pb.ImportKeyRequest(
        kek=pb.KeyRef(key_id=KBPK_ID), wrapped_key=block.encode("ascii"), kcv=ref.kcv("TDES_2KEY", clear),
        template=t, kcv_method=pb.KCV_METHOD_CMAC))
    assert (code, message) == (grpc.StatusCode.INVALID_ARGUMENT,
                               "kcv_method: CMAC is for AES and SM4 keys; a TDES_2KEY key's KCV is ECB only")
    r = _import(site, block, t, ref.kcv("TDES_2KEY", clear))
    assert r.key.kcv_method == pb.KCV_METHOD_ECB
    code, _ = code_of(site.client.keys.GetKeyCheckValue, key_pb.GetKeyCheckValueRequest(
        key=pb.KeyRef(key_id=t.key_id), kcv_method=pb.KCV_METHOD_CMAC))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
