"""Issue 30: ``[pin] allow_aes_to_tdes_translation``, through a real ``hsmsvc serve`` per setting.

ISO 9564-1:2017 format 4 is the AES PIN block (clause 9.3.6); formats 0, 1 and 3 are TDES ones.
A bank may forbid translating the first into the second (a downgrade); the default allows it
(hsmsvc/service/context.py ``PinPolicy`` says why). The format 4 block is made and the format 0
result opened with tests/reference.py (pyca), nothing of hsmsvc's.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from hsmsvc.api import config
from hsmsvc.errors import InvalidInput
from hsmsvc.hsm.model import KeySpec
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse
from hsmsvc_client.v1 import pin_service_pb2 as pin_pb
from hsmsvc_client.v1 import types_pb2 as pb
from hsmsvc_client import Client, ClientTls
from tests import reference as ref
from tests.api.conftest import POLICY, _form, code_of, forming, launch, seal_lmk, stop
from tools.bench.pki import ThrowawayCA

PAN = "4000001234562"
ISO_0, ISO_3, ISO_4 = pb.PIN_BLOCK_FORMAT_ISO_0, pb.PIN_BLOCK_FORMAT_ISO_3, pb.PIN_BLOCK_FORMAT_ISO_4


@dataclass(frozen=True)
class Site:
    client: Client
    aes: bytes
    aes2: bytes
    tdes: bytes
    sm4: bytes


@pytest.fixture(scope="module", params=["default", "false"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    d = tmp_path_factory.mktemp(f"pin-policy-{request.param}")
    ca = ThrowawayCA(d)
    core = ca.issue("core-banking")
    srv = ca.issue("hsmsvc-server", server=True)
    sealed = seal_lmk(d)
    (d / "policy.toml").write_text(POLICY)
    store = f"sqlite:///{d / 'keys.db'}"
    B = ModeOfUse.ENCRYPT_DECRYPT
    with forming(store, sealed) as km:
        aes = _form(km, KeySpec("zpk-aes", 1, KeyType.ZPK, Algorithm.AES_128, KeyUsage.PIN_ENCRYPTION, B))
        aes2 = _form(km, KeySpec("zpk-aes-2", 1, KeyType.ZPK, Algorithm.AES_256, KeyUsage.PIN_ENCRYPTION, B))
        tdes = _form(km, KeySpec("zpk-tdes", 1, KeyType.ZPK, Algorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION, B))
        sm4 = _form(km, KeySpec("zpk-sm4", 1, KeyType.ZPK, Algorithm.SM4, KeyUsage.PIN_ENCRYPTION, B))
    extra = "[pin]\nallow_aes_to_tdes_translation = false\n" if request.param == "false" else ""
    proc, info = launch(d, store, sealed, srv, ca, extra)
    client = Client(f"127.0.0.1:{info['port']}", ClientTls(ca.ca_file, core.cert, core.key, "localhost"))
    try:
        yield Site(client, aes, aes2, tdes, sm4)
    finally:
        client.close()
        stop(proc, d / "server.log")


def _iso4(site: Site, pin: str) -> bytes:
    return ref.iso4_encipher("AES_128", site.aes, ref.iso4_pin_field(pin, secrets.token_bytes(8)), PAN)


def _translate(site: Site, block: bytes, dst: str, fmt: int) -> pin_pb.TranslatePinResponse:
    return site.client.pins.TranslatePin(pin_pb.TranslatePinRequest(
        source_key=pb.KeyRef(key_id="zpk-aes"), source_format=ISO_4, destination_key=pb.KeyRef(key_id=dst),
        destination_format=fmt, pin_block=block, pan=PAN))


def test_format_4_to_format_0_follows_the_setting(site: Site, request: pytest.FixtureRequest) -> None:
    block = _iso4(site, "4821")
    if request.node.callspec.params["site"] == "default":
        out = _translate(site, block, "zpk-tdes", ISO_0)
        assert ref.decode_iso0(ref.tdes_ecb(site.tdes, out.pin_block, decrypt=True), PAN) == "4821"
        return
    for fmt, name in ((ISO_0, "ISO_0"), (ISO_3, "ISO_3")):
        code, message = code_of(_translate, site, block, "zpk-tdes", fmt)
        assert code is grpc.StatusCode.FAILED_PRECONDITION
        assert message == (f"destination_format: translation from ISO format 4 (AES) to {name} (TDES) is not "
                           "allowed in this deployment ([pin] allow_aes_to_tdes_translation = false)")


def test_the_batch_follows_the_setting_too(site: Site, request: pytest.FixtureRequest) -> None:
    blocks = _iso4(site, "4821") + _iso4(site, "90210")
    req = pin_pb.TranslatePinBatchRequest(
        source_key=pb.KeyRef(key_id="zpk-aes"), source_format=ISO_4, destination_key=pb.KeyRef(key_id="zpk-tdes"),
        destination_format=ISO_0, pin_blocks=blocks, pans=[PAN, PAN])
    if request.node.callspec.params["site"] == "default":
        out = site.client.pins.TranslatePinBatch(req).pin_blocks
        pins = [ref.decode_iso0(ref.tdes_ecb(site.tdes, out[i:i + 8], decrypt=True), PAN) for i in (0, 8)]
        assert pins == ["4821", "90210"]
        return
    code, message = code_of(site.client.pins.TranslatePinBatch, req)
    assert code is grpc.StatusCode.FAILED_PRECONDITION and "allow_aes_to_tdes_translation" in message


def test_aes_to_aes_is_never_refused(site: Site) -> None:
    out = _translate(site, _iso4(site, "4821"), "zpk-aes-2", ISO_4)
    field = ref.iso4_decipher("AES_256", site.aes2, out.pin_block, PAN)
    assert field.hex().upper().startswith("444821A")


_CONFIG = 'insecure_dev = true\nlisten = "127.0.0.1:0"\n[backend]\nsealed_lmk = "lmk.sealed"\n'


@pytest.mark.parametrize(("text", "allowed"), [("", True), ("allow_aes_to_tdes_translation = true", True),
                                               ("allow_aes_to_tdes_translation = false", False)])
def test_the_config_switch(tmp_path: Path, text: str, allowed: bool) -> None:
    path = tmp_path / "hsmsvc.toml"
    path.write_text(f'{_CONFIG}[pin]\n{text}\n')
    assert config.load(str(path), environ={}).pin.allow_aes_to_tdes_translation is allowed


@pytest.mark.parametrize("text", ['allow_aes_to_tdes_translation = "false"', "allow_aes_to_tdes = false"])
def test_a_quoted_or_misspelt_switch_is_refused(tmp_path: Path, text: str) -> None:
    """A quoted "false" is a non-empty string, so truthy: taken as written it would allow the downgrade."""
    path = tmp_path / "hsmsvc.toml"
    path.write_text(f'{_CONFIG}[pin]\n{text}\n')
    with pytest.raises(InvalidInput) as e:
        config.load(str(path), environ={})
    assert (e.value.field or "").startswith("pin.allow_aes_to_tdes")


def test_sm4_to_tdes_is_the_same_downgrade(site: Site, request: pytest.FixtureRequest) -> None:
    """Issue 36's third review: SM4's widened format 0 (a 128-bit cipher) to a TDES format went
    around the switch, which named format 4 only."""
    pin_field = bytes.fromhex("044821".ljust(32, "F"))
    block = ref.ecb("SM4", site.sm4, ref.xor(pin_field, bytes.fromhex(PAN[-13:-1].rjust(32, "0"))))
    req = pin_pb.TranslatePinRequest(
        source_key=pb.KeyRef(key_id="zpk-sm4"), source_format=pb.PIN_BLOCK_FORMAT_SM4_0,
        destination_key=pb.KeyRef(key_id="zpk-tdes"), destination_format=ISO_0, pin_block=block, pan=PAN)
    if request.node.callspec.params["site"] == "default":
        out = site.client.pins.TranslatePin(req)
        assert ref.decode_iso0(ref.tdes_ecb(site.tdes, out.pin_block, decrypt=True), PAN) == "4821"
        return
    code, message = code_of(site.client.pins.TranslatePin, req)
    assert code is grpc.StatusCode.FAILED_PRECONDITION
    assert "SM4 format 0 (SM4) to ISO_0 (TDES)" in message
