"""TR-34 key tokens (ASC X9 TR 34-2019, one-pass): import as the KRD, export as the KDH.

The KRD's key pair is a KTK (mode of use D or N) whose private half unwraps the
token's content key; the KDH's is a KTK with mode of use S, which only signs.
The token's format is :mod:`hsmsvc.crypto.tr34`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hsmsvc.crypto import compare, components, tr34
from hsmsvc.crypto.tr31 import KeyBlockAlgorithm
from hsmsvc.errors import InvalidInput, InvalidKeyBlock, KeyUsageViolation, VerificationFailed
from hsmsvc.hsm.commands.base import STRENGTH, HsmCommand
from hsmsvc.hsm.model import KeyCryptogram, KeySpec
from hsmsvc.hsm.policy import Operation
from hsmsvc.types import Algorithm, Exportability, ModeOfUse

if TYPE_CHECKING:
    from hsmsvc.hsm.commands.core import CommandBackend

__all__ = ["ExportTr34Key", "ImportTr34Key"]

# TR 34-2019 carries TDEA and AES keys only.
_CARRIED = {Algorithm.TDES_2KEY: KeyBlockAlgorithm.TDES, Algorithm.TDES_3KEY: KeyBlockAlgorithm.TDES,
            Algorithm.AES_128: KeyBlockAlgorithm.AES, Algorithm.AES_192: KeyBlockAlgorithm.AES,
            Algorithm.AES_256: KeyBlockAlgorithm.AES}


def _carried(spec: KeySpec) -> KeyBlockAlgorithm:
    alg = _CARRIED.get(spec.algorithm)
    if alg is None:
        raise InvalidInput("template.algorithm", "TR-34 carries TDES and AES keys only")
    return alg


def _check_header(header: tr34.KeyBlockHeader, spec: KeySpec, length: int) -> None:
    """The signed, deciphered header against the template; the token is authentic, so the field is named."""
    if header.usage is not spec.usage:
        raise KeyUsageViolation("token", f"header key usage {header.usage.value} differs from the template's "
                                         f"{spec.usage.value}")
    if header.algorithm is not _carried(spec) or length != spec.algorithm.key_length:
        raise KeyUsageViolation("token", f"header algorithm {header.algorithm.value} or key length "
                                         f"{8 * length} bits differs from the template's {spec.algorithm.value}")
    if header.mode_of_use not in (spec.mode_of_use, ModeOfUse.NO_RESTRICTIONS):
        raise KeyUsageViolation("token", f"header mode of use {header.mode_of_use.value} differs from the "
                                         f"template's {spec.mode_of_use.value}")
    if header.exportability is not Exportability.EXPORTABLE and spec.exportability is Exportability.EXPORTABLE:
        raise KeyUsageViolation("token", f"header exportability {header.exportability.value} does not permit "
                                         f"the template's {spec.exportability.value}")


@dataclass(frozen=True, kw_only=True, repr=False)
class ImportTr34Key(HsmCommand[KeyCryptogram]):
    """Verify a KDH's token (its certificate issued by ``ca_certificate``), unwrap it and store the key.

    The signature is checked before the KRD's private key is touched; every
    fault from there on (signature, chain, OAEP, padding, structure, KCV) is the
    one ``InvalidKeyBlock``, so the token is no oracle.
    """

    krd: KeyCryptogram
    token: bytes
    kdh_certificate: bytes
    ca_certificate: bytes
    spec: KeySpec
    kcv: bytes | None = None

    def run(self, b: CommandBackend) -> KeyCryptogram:
        spec, kcv = self.spec, self.kcv
        _carried(spec)
        kdh = tr34.load_certificate(self.kdh_certificate, "kdh_certificate")
        ca = tr34.load_certificate(self.ca_certificate, "ca_certificate")
        if kcv is not None and (not isinstance(kcv, (bytes, bytearray)) or not 2 <= len(kcv) <= 3):
            raise InvalidInput("kcv", "2 to 3 bytes")
        with b._guard():
            k = b._use(self.krd, Operation.KEY_TRANSPORT_DECRYPT)
            if k.algorithm not in (Algorithm.RSA_2048, Algorithm.RSA_3072):
                raise KeyUsageViolation("krd_key", "TR-34 needs an RSA key pair")
            if STRENGTH[spec.algorithm] > STRENGTH[k.algorithm]:
                raise KeyUsageViolation("krd_key", f"weaker than the {spec.algorithm.value} key it would carry "
                                                   "(X9.24-1)")
            header, clear = tr34.open_token(token=self.token, kdh_cert=kdh, ca_cert=ca,
                                            decrypt=lambda c: b._transport_decrypt(k, c))
            _check_header(header, spec, len(clear))
            if spec.algorithm.is_tdes:
                clear = components.adjust_odd_parity(clear)
            try:
                components.check_key(spec.algorithm, clear)
            except InvalidInput:
                raise InvalidKeyBlock() from None
            out = b._seal_clear(spec, clear)
        if kcv is not None and not compare.bytes_eq(out.kcv[: len(kcv)], bytes(kcv)):
            raise VerificationFailed("kcv", "does not match the imported key")
        return out


@dataclass(frozen=True, kw_only=True, repr=False)
class ExportTr34Key(HsmCommand[bytes]):
    """A one-pass token carrying ``key`` to the KRD of ``krd_certificate``, signed by the KDH key ``kdh``.

    ``kdh_certificate`` must certify ``kdh``'s public half (it names the signer in
    the token); ``krd_certificate`` must be issued by ``ca_certificate``.
    """

    kdh: KeyCryptogram
    kdh_certificate: bytes
    key: KeyCryptogram
    krd_certificate: bytes
    ca_certificate: bytes

    def run(self, b: CommandBackend) -> bytes:
        kdh_cert = tr34.load_certificate(self.kdh_certificate, "kdh_certificate")
        krd_cert = tr34.load_certificate(self.krd_certificate, "krd_certificate")
        ca = tr34.load_certificate(self.ca_certificate, "ca_certificate")
        try:
            tr34.check_issued(krd_cert, ca, datetime.now(timezone.utc))
        except InvalidInput:
            raise VerificationFailed("krd_certificate", "not issued by ca_certificate, or not valid now") from None
        with b._guard():
            signer = b._use(self.kdh, Operation.TR34_SIGN)
            x = b._use(self.key, Operation.KEY_EXPORT)
            header = tr34.KeyBlockHeader(usage=x.spec.usage, algorithm=_carried(x.spec),
                                         mode_of_use=x.spec.mode_of_use, exportability=Exportability.NON_EXPORTABLE)
            mine = kdh_cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
            if not compare.bytes_eq(mine, b._public_key(signer)):
                raise InvalidInput("kdh_certificate", "does not certify the KDH key's public half")
            if STRENGTH[x.algorithm] > STRENGTH[signer.algorithm]:
                raise KeyUsageViolation("kdh_key", "weaker than the key it would carry (X9.24-1)")
            return tr34.build_token(sign=lambda d: b._transport_sign(signer, d), kdh_cert=kdh_cert,
                                    krd_cert=krd_cert, header=header, key=b._clear_for_transport(x))
