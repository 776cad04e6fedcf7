"""AgreeKey in the soft backend: two sites' KAKs agree one AES ZMK (ECDH P-521, SP 800-56C one-step KDF).

The KAKs are put under each site's LMK from private scalars the test knows, so
the derived key's KCV is checked against tests/reference.py's own ECDH, one-step
KDF and FixedInfo: the backend's answer does not vouch for itself.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from hsmsvc.errors import InvalidInput, KeyUsageViolation, Unsupported, VerificationFailed
from hsmsvc.hsm.commands import AgreeKey, ExportKey, GenerateKey, PublicKey
from hsmsvc.hsm.model import Command, KeyCryptogram, KeySpec
from hsmsvc.hsm.pkcs11.backend import PKCS11_CAPABILITIES
from hsmsvc.hsm.soft.backend import SoftBackend
from hsmsvc.types import Algorithm, KeyType, KeyUsage, ModeOfUse
from tests import reference as ref

NONCE = bytes.fromhex("00112233445566778899AABBCCDDEEFF") + b"zone=branch7"


def kak_spec(key_id: str = "kak", mode: ModeOfUse = ModeOfUse.DERIVE) -> KeySpec:
    return KeySpec(key_id, 1, KeyType.KAK, Algorithm.ECC_P521, KeyUsage.ASYMMETRIC_KEY_WRAPPING, mode)


def zmk_spec(algorithm: Algorithm = Algorithm.AES_256, usage: KeyUsage = KeyUsage.KBPK,
             key_type: KeyType = KeyType.ZMK) -> KeySpec:
    return KeySpec("zmk-agreed", 1, key_type, algorithm, usage, ModeOfUse.ENCRYPT_DECRYPT, zone="branch7")


@dataclasses.dataclass
class Site:
    backend: SoftBackend
    d: bytes
    kak: KeyCryptogram
    public: bytes


@pytest.fixture
def sites() -> Iterator[tuple[Site, Site]]:
    made = []
    for name in ("core", "branch"):
        b = SoftBackend(secrets.token_bytes(32))
        d = ec.generate_private_key(ec.SECP521R1()).private_numbers().private_value.to_bytes(66, "big")
        kak = b._seal_clear(kak_spec(f"kak-{name}"), d)  # a known scalar, so the test can compute the key
        made.append(Site(b, d, kak, b.execute(PublicKey(key=kak))))
    try:
        yield made[0], made[1]
    finally:
        for s in made:
            s.backend.close()


def agree(site: Site, peer: Site, spec: KeySpec | None = None, info: bytes = NONCE,
          fingerprint: bytes | None = None) -> KeyCryptogram:
    return site.backend.execute(AgreeKey(
        kak=site.kak, peer_public_key=peer.public, spec=spec or zmk_spec(), shared_info=info,
        peer_fingerprint=ref.sha256(peer.public)[:8] if fingerprint is None else fingerprint))


def expected_kcv(a: Site, b: Site, spec: KeySpec, info: bytes = NONCE) -> bytes:
    """The derived key by tests/reference.py alone: Z, FixedInfo as documented, the one-step KDF, the KCV."""
    algorithm_id = f"hsmsvc/agree/v1|{spec.key_type.value}|{spec.algorithm.value}|{spec.usage.value}".encode()
    length = {Algorithm.AES_128: 16, Algorithm.AES_192: 24, Algorithm.AES_256: 32}[spec.algorithm]
    fixed = ref.agreement_fixed_info(algorithm_id, a.public, b.public, 8 * length, info)
    key = ref.one_step_kdf_sha512(ref.ecdh_p521_z(a.d, b.public), length, fixed)
    return ref.kcv(spec.algorithm, key)


@pytest.mark.parametrize("algorithm", [Algorithm.AES_256, Algorithm.AES_192, Algorithm.AES_128])
def test_both_sites_agree_the_same_zmk(sites: tuple[Site, Site], algorithm: Algorithm) -> None:
    core, branch = sites
    spec = zmk_spec(algorithm)
    at_core, at_branch = agree(core, branch, spec), agree(branch, core, spec)
    assert at_core.kcv == at_branch.kcv == expected_kcv(core, branch, spec)
    assert at_core.blob != at_branch.blob  # each under its own LMK


def test_the_kak_public_half_and_fingerprint(sites: tuple[Site, Site]) -> None:
    core, _ = sites
    assert core.public == ref.p521_public(core.d)
    assert core.kak.kcv == ref.sha256(core.public)[:8]


def test_the_shared_info_and_the_template_are_bound(sites: tuple[Site, Site]) -> None:
    core, branch = sites
    base = agree(core, branch).kcv
    assert agree(core, branch, info=NONCE + b"!").kcv != base
    assert agree(core, branch, zmk_spec(usage=KeyUsage.KEK)).kcv != base


def test_a_fingerprint_that_does_not_match_is_refused(sites: tuple[Site, Site]) -> None:
    core, branch = sites
    wrong = bytes(a ^ b for a, b in zip(ref.sha256(branch.public)[:8], b"\x00" * 7 + b"\x01", strict=True))
    with pytest.raises(VerificationFailed, match="peer_fingerprint"):
        agree(core, branch, fingerprint=wrong)


def test_the_own_public_key_is_refused(sites: tuple[Site, Site]) -> None:
    core, _ = sites
    with pytest.raises(InvalidInput, match="own public key"):
        agree(core, core)


def test_another_curve_is_refused(sites: tuple[Site, Site]) -> None:
    core, branch = sites
    p256 = dataclasses.replace(branch, public=_p256_spki())
    with pytest.raises(InvalidInput, match="peer_public_key: .*P-521"):
        agree(core, p256)


def _p256_spki() -> bytes:
    from cryptography.hazmat.primitives import serialization

    return ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize(("spec", "field"), [
    (lambda: zmk_spec(Algorithm.TDES_3KEY, KeyUsage.KEK), "template.algorithm"),
    (lambda: KeySpec("zpk", 1, KeyType.ZPK, Algorithm.AES_256, KeyUsage.PIN_ENCRYPTION,
                     ModeOfUse.ENCRYPT_DECRYPT), "template.key_type"),
    (lambda: zmk_spec(key_type=KeyType.TMK), "template.key_type"),
])
def test_only_an_aes_zmk_is_agreed(sites: tuple[Site, Site], spec: object, field: str) -> None:
    core, branch = sites
    with pytest.raises(InvalidInput, match=field):
        agree(core, branch, spec())  # type: ignore[operator]


@pytest.mark.parametrize("info", [b"", b"short nonce", b"x" * 513])
def test_the_shared_info_needs_a_nonce(sites: tuple[Site, Site], info: bytes) -> None:
    core, branch = sites
    with pytest.raises(InvalidInput, match="shared_info"):
        agree(core, branch, info=info)


def test_the_kak_never_leaves_and_only_agrees(sites: tuple[Site, Site]) -> None:
    core, branch = sites
    zmk = agree(core, branch)
    with pytest.raises(KeyUsageViolation, match="KAK may not be used for KEY_EXPORT"):
        core.backend.execute(ExportKey(kek=zmk, key=core.kak))
    ktk = core.backend.execute(GenerateKey(spec=KeySpec("ktk", 1, KeyType.KTK, Algorithm.RSA_2048,
                                                        KeyUsage.ASYMMETRIC_KEY_WRAPPING, ModeOfUse.DECRYPT_ONLY)))
    with pytest.raises(KeyUsageViolation, match="KTK may not be used for KEY_AGREE"):
        core.backend.execute(AgreeKey(kak=ktk, peer_public_key=branch.public, spec=zmk_spec(), shared_info=NONCE,
                                      peer_fingerprint=ref.sha256(branch.public)[:8]))


@pytest.mark.parametrize(("key_type", "algorithm", "mode"), [
    (KeyType.KAK, Algorithm.ECC_P521, ModeOfUse.DECRYPT_ONLY),
    (KeyType.KAK, Algorithm.RSA_2048, ModeOfUse.DERIVE),
    (KeyType.KTK, Algorithm.ECC_P521, ModeOfUse.DECRYPT_ONLY),
    (KeyType.KTK, Algorithm.RSA_2048, ModeOfUse.DERIVE),
    (KeyType.CTK, Algorithm.ECC_P521, ModeOfUse.DERIVE),  # a P-521 CTK decrypts components, never agrees
])
def test_a_kak_is_p521_with_mode_derive_only(key_type: KeyType, algorithm: Algorithm, mode: ModeOfUse) -> None:
    with pytest.raises(InvalidInput):
        KeySpec("k", 1, key_type, algorithm, KeyUsage.ASYMMETRIC_KEY_WRAPPING, mode)


def test_generated_kaks_agree(sites: tuple[Site, Site]) -> None:
    core, branch = sites
    a = core.backend.execute(GenerateKey(spec=kak_spec("kak-gen")))
    b = branch.backend.execute(GenerateKey(spec=kak_spec("kak-gen")))
    pa, pb = core.backend.execute(PublicKey(key=a)), branch.backend.execute(PublicKey(key=b))
    assert a.kcv == ref.sha256(pa)[:8] and len(pa) == 158
    ka = core.backend.execute(AgreeKey(kak=a, peer_public_key=pb, peer_fingerprint=b.kcv, shared_info=NONCE,
                                       spec=zmk_spec()))
    kb = branch.backend.execute(AgreeKey(kak=b, peer_public_key=pa, peer_fingerprint=a.kcv, shared_info=NONCE,
                                         spec=zmk_spec()))
    assert ka.kcv == kb.kcv


def test_pkcs11_declares_no_key_agreement(sites: tuple[Site, Site]) -> None:
    assert Command.KEY_AGREE not in PKCS11_CAPABILITIES.commands
    with pytest.raises(Unsupported):
        PKCS11_CAPABILITIES.require(Command.KEY_AGREE, Algorithm.ECC_P521)
