"""The payment-HSM command families, each command a value run by ``Backend.execute``.

A command is written once, over a backend's loaded keys and primitives
(:class:`~hsmsvc.hsm.commands.core.CommandBackend`); the soft and PKCS#11
backends supply only key loading and primitives, and the pool forwards the
command value to a worker. A new command is one class in its family's module
(and a capability in :class:`~hsmsvc.hsm.model.Command` if backends may lack it).
"""

from hsmsvc.hsm.commands.agree import AgreeKey, AgreeSm2Key, Sm2Exchange, Sm2Result, Sm2Role
from hsmsvc.hsm.commands.base import HsmCommand, TimingHook
from hsmsvc.hsm.commands.cards import (
    CvvData,
    DynamicCvvData,
    DynamicKind,
    GenerateCvv,
    VerifyCvvs,
    VerifyDynamicCvvs,
)
from hsmsvc.hsm.commands.data import DecryptData, EncryptData, EncryptFields, Random, ReencryptData
from hsmsvc.hsm.commands.diversify import DiversifyKey
from hsmsvc.hsm.commands.dukpt import (
    DecryptDukptData,
    DukptDirection,
    EncryptDukptData,
    ExportInitialKey,
    GenerateDukptMac,
    VerifyDukptMac,
)
from hsmsvc.hsm.commands.emv import ArpcMethod, ArqcData, VerifyArqcs
from hsmsvc.hsm.commands.keys import (
    CheckComponent,
    ExportKey,
    FormKey,
    FormKeyWrapped,
    GenerateKey,
    ImportKey,
    Kcv,
    KeySyncMac,
    PublicKey,
    SameValue,
)
from hsmsvc.hsm.commands.lmk import (
    AuditMac,
    AuditMacs,
    CardHashes,
    Forget,
    LmkComponents,
    PanHash,
    PanHashes,
    ReadAuditAnchor,
    TranslateLmk,
    WriteAuditAnchor,
)
from hsmsvc.hsm.commands.mac import GenerateMac, GenerateMacs, VerifyMac, VerifyMacs
from hsmsvc.hsm.commands.pin import (
    GeneratePinOffset,
    GeneratePvv,
    TranslatePin,
    TranslatePins,
    VerifyPinIbm3624,
    VerifyPinPvv,
)
from hsmsvc.hsm.commands.scripts import GenerateIssuerScript, GeneratePinChangeScript, ScriptData
from hsmsvc.hsm.commands.tr34 import ExportTr34Key, ImportTr34Key
from hsmsvc.hsm.commands.cosign import CoDecrypt, CoSign, CoSigningShare, CreateCoSigningShare
from hsmsvc.hsm.commands.sign import GenerateCsr, ImportPublicKey, Sign, SignedData, VerifySignature
from hsmsvc.hsm.commands.storedpins import (
    CompareStoredPins,
    EncryptPinForStorage,
    ReencryptStoredPin,
    ReencryptStoredPins,
    VerifyPinStored,
    VerifyPinsStored,
)

__all__ = [
    "AgreeKey",
    "ArpcMethod",
    "ArqcData",
    "CvvData",
    "DecryptDukptData",
    "DiversifyKey",
    "DukptDirection",
    "DynamicCvvData",
    "DynamicKind",
    "EncryptDukptData",
    "ExportInitialKey",
    "GenerateDukptMac",
    "GenerateIssuerScript",
    "GeneratePinChangeScript",
    "GenerateCvv",
    "ScriptData",
    "VerifyArqcs",
    "VerifyCvvs",
    "VerifyDukptMac",
    "VerifyDynamicCvvs",
    "AgreeSm2Key",
    "AuditMac",
    "AuditMacs",
    "CardHashes",
    "CheckComponent",
    "CoDecrypt",
    "CoSign",
    "CoSigningShare",
    "CreateCoSigningShare",
    "GenerateCsr",
    "ImportPublicKey",
    "Sign",
    "SignedData",
    "VerifySignature",
    "CompareStoredPins",
    "DecryptData",
    "EncryptData",
    "EncryptFields",
    "EncryptPinForStorage",
    "ExportKey",
    "ExportTr34Key",
    "Forget",
    "FormKey",
    "FormKeyWrapped",
    "GenerateKey",
    "GenerateMac",
    "GenerateMacs",
    "GeneratePinOffset",
    "GeneratePvv",
    "HsmCommand",
    "ImportKey",
    "ImportTr34Key",
    "Kcv",
    "KeySyncMac",
    "LmkComponents",
    "PanHash",
    "PanHashes",
    "PublicKey",
    "Random",
    "SameValue",
    "ReadAuditAnchor",
    "ReencryptData",
    "ReencryptStoredPin",
    "ReencryptStoredPins",
    "TimingHook",
    "TranslateLmk",
    "TranslatePin",
    "TranslatePins",
    "VerifyMac",
    "VerifyMacs",
    "VerifyPinIbm3624",
    "VerifyPinPvv",
    "VerifyPinStored",
    "VerifyPinsStored",
    "WriteAuditAnchor",
    "Sm2Exchange",
    "Sm2Result",
    "Sm2Role",
]
