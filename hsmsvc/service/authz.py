"""Who may call which method with which keys: the authorization policy.

The policy is a TOML file that names principals (the identity in a client's
certificate) and gives each roles and key patterns:

.. code-block:: toml

    [[principals]]
    name = "branch-0001"                 # certificate CN, or a DNS/URI SAN
    roles = ["operator"]
    keys = ["branch-0001.*", "zone:branch-0001"]
    methods = ["PinService.TranslatePin", "MacService.*"]   # optional: narrows the roles

Roles give methods (:data:`ROLE_METHODS`); key patterns are shell globs over a
key's id, or ``zone:<zone>`` over its zone. A key is the principal's when its id
matches one of the id patterns and its zone one of the zone patterns (a kind the
principal lists none of does not restrict). The alias never counts: the caller
chooses it, so it says nothing about whose key it is (issue 27); an ``alias:``
pattern is refused at load. Separation of duties (PCI PIN Security requirement
28, ISO 11568-1 clause 4.4) is checked when the policy is loaded: an auditor may
not also manage or operate keys, and neither an issuer (PIN offset and PVV
generation) nor a reencryptor (the stored-PIN sample check) may also be an operator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, unique
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Final, Mapping

import msgspec

from hsmsvc import tomlfile
from hsmsvc.errors import KeyNotFound, PermissionDenied
from hsmsvc.hsm.model import BlockTemplate, KeySpec
from hsmsvc.keys.model import StoredKey

__all__ = ["NO_SUCH_KEY", "ROLE_METHODS", "Policy", "Principal", "Role"]

# The one answer for a key that does not exist and for one outside the caller's patterns,
# so that neither status nor text tells a caller that someone else's key exists.
NO_SUCH_KEY: Final = "no such key, alias or version"
_ZONE_PREFIX: Final = "zone:"


@unique
class Role(Enum):
    MANAGER = "manager"
    """Creates, imports, exports, rotates and changes the state of keys."""
    OPERATOR = "operator"
    """Uses keys: PINs, MACs, data, card value and cryptogram checks. A branch front-end or the core banking system."""
    CUSTODIAN = "custodian"
    """Holds a key component or an LMK share; takes part in ceremonies and opens a sealed server (dual control)."""
    AUDITOR = "auditor"
    """Reads key metadata and the audit trail; changes nothing."""
    ISSUER = "issuer"
    """Issues PIN verification data (IBM 3624 offset, Visa PVV) for a customer-selected PIN, and card
    verification values (CVV, CVV2, iCVV)."""
    REENCRYPTOR = "reencryptor"
    """Runs the batch re-encryption of stored PINs and its sample check (``hsmsvc reencrypt --server``)."""


_READ: Final = frozenset(
    {"KeyService.GetKey", "KeyService.ListKeys", "KeyService.GetKeyCheckValue", "KeyService.GetPublicKey"}
)
# What a use path does with PIN blocks: translate, verify, store. Nothing here
# answers with data derived from a PIN other than a block or a stored value.
_USE_PINS: Final = frozenset(
    {"PinService.TranslatePin", "PinService.TranslatePinBatch", "PinService.StreamTranslatePin",
     "PinService.VerifyPin", "PinService.VerifyPinBatch", "PinService.StreamVerifyPin",
     "PinService.EncryptPinForStorage", "PinService.ChangeStoredPin", "PinService.ReEncryptStoredPins"}
)
# What a use path does with card values and cryptograms: checks, and the authorisation host's issuer
# scripts (a PIN change is a translation to the card's key). Making a CVV is issuance
# (Role.ISSUER): an operator who could also make them would mint CVV2s for any card.
_VERIFY_CARDS: Final = frozenset(
    {"CardService.VerifyCvv", "CardService.VerifyCvvBatch", "CardService.VerifyDynamicCvv",
     "CardService.VerifyArqc", "CardService.VerifyArqcBatch", "CardService.GenerateIssuerScript",
     "CardService.GeneratePinChangeScript"}
)
ROLE_METHODS: Final[Mapping[Role, frozenset[str]]] = {
    Role.MANAGER: _READ
    | frozenset(
        {
            "KeyService.GenerateKey",
            "KeyService.ImportKey",
            "KeyService.ExportKey",
            "KeyService.AgreeKey",
            "KeyService.StartKeyAgreement",
            "KeyService.ImportTr34Key",
            "KeyService.ExportTr34Key",
            "KeyService.RotateKey",
            "KeyService.UpdateKeyState",
            "KeyService.ImportPublicKey",
            "TerminalService.ExportInitialKey",
            "KeyService.DiversifyKey",
            "SignatureService.GenerateCsr",
            "SignatureService.Verify",
            # Enrolment of a client's two-party key creates a key: a manager's (narrowed by the
            # policy's ``methods`` for an enrolment front end).
            "CoSigningService.CreateCoSigningKey",
            "KeySyncService.StartKeyChange",
            "KeySyncService.ApplyKeyChange",
            "KeySyncService.ConfirmKeyChange",
            "KeySyncService.AcknowledgeKeyChange",
            "CeremonyService.StartKeyFormation",
            "CeremonyService.ApproveKeyFormation",
            "CeremonyService.GetKeyFormation",
            "CeremonyService.CancelKeyFormation",
            "CeremonyService.GetSealStatus",
        }
    ),
    # Not PinService.*: issuance and the sample check turn a PIN block or stored PIN into
    # PIN-derived data or a comparison, which a caller who may only verify must not have.
    Role.OPERATOR: _USE_PINS | frozenset(
        {"MacService.*", "DataService.*", "KeyService.GetKeyCheckValue", "KeyService.GetPublicKey",
         "KeySyncService.SignOn", "SignatureService.Sign", "SignatureService.Verify", "CoSigningService.CoSign",
         "CoSigningService.CoDecrypt", *_VERIFY_CARDS, "TerminalService.VerifyDukptMac",
         "TerminalService.GenerateDukptMac", "TerminalService.DecryptDukptData", "TerminalService.EncryptDukptData"}
    ),
    # A custodian also holds a share of a share-sealed LMK and gives it to a sealed server (issue 29);
    # a policy's ``methods`` narrows a principal to one of the two duties.
    Role.CUSTODIAN: frozenset(
        {"KeyService.GetKeyCheckValue", "KeyService.GetPublicKey", "CeremonyService.AddKeyComponent",
         "CeremonyService.GetKeyFormation", "CeremonyService.SubmitUnsealShare", "CeremonyService.GetSealStatus"}
    ),
    Role.AUDITOR: _READ | {"CeremonyService.GetKeyFormation", "CeremonyService.GetSealStatus",
                           "StatusService.GetServerStatus"},
    Role.ISSUER: frozenset(
        {"PinService.GeneratePinOffset", "PinService.GeneratePvv", "CardService.GenerateCvv",
         "KeyService.GetKeyCheckValue"}),
    Role.REENCRYPTOR: frozenset(
        {"PinService.ReEncryptStoredPins", "PinService.CompareStoredPins", "KeyService.GetKeyCheckValue"}),
}
# Pairs of roles one principal may not hold together.
INCOMPATIBLE: Final = (
    (Role.AUDITOR, Role.MANAGER),
    (Role.AUDITOR, Role.OPERATOR),
    (Role.CUSTODIAN, Role.OPERATOR),
    # An operator makes PIN blocks for any PAN (TranslatePin, EncryptPinForStorage); with
    # issuance or the sample check it would recover PINs by offset arithmetic or by
    # comparing candidates (issue 27): docs/architecture.md, "PIN issuance".
    (Role.ISSUER, Role.OPERATOR),
    (Role.REENCRYPTOR, Role.OPERATOR),
    (Role.AUDITOR, Role.ISSUER),
    (Role.AUDITOR, Role.REENCRYPTOR),
)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller and what the policy grants it."""

    name: str
    roles: frozenset[Role]
    keys: tuple[str, ...]
    methods: tuple[str, ...] | None = None
    # Decisions already made: the grants are fixed, so matching the patterns
    # again on every call would only cost time on the hot path.
    _calls: dict[str, bool] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)
    _names: dict[tuple[str, str], bool] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def may_call(self, method: str) -> bool:
        known = self._calls.get(method)
        if known is None:
            granted = [m for r in self.roles for m in ROLE_METHODS[r]]
            known = any(fnmatchcase(method, m) for m in granted) and (
                self.methods is None or any(fnmatchcase(method, m) for m in self.methods))
            if len(self._calls) < 1024:
                self._calls[method] = known
        return known

    def require_call(self, method: str) -> None:
        if not (self._calls.get(method) or self.may_call(method)):
            raise PermissionDenied("method", f"{self.name} may not call {method}")

    def may_name(self, spec: KeySpec | BlockTemplate) -> bool:
        """Whether a key with this id and zone is the principal's; the alias is no part of it."""
        ident = (spec.key_id, spec.zone)
        known = self._names.get(ident)
        if known is None:
            ids = [p for p in self.keys if not p.startswith(_ZONE_PREFIX)]
            zones = [p[len(_ZONE_PREFIX):] for p in self.keys if p.startswith(_ZONE_PREFIX)]
            # Both kinds must hold: a manager given "branch-0001.*" and "zone:branch-0001"
            # may not make "branch-0001.x" in zone branch-0002, nor a k-… key in it.
            known = bool(self.keys) and (
                not ids or any(fnmatchcase(spec.key_id, p) for p in ids)) and (
                not zones or any(fnmatchcase(spec.zone, z) for z in zones))
            if len(self._names) < 100_000:
                self._names[ident] = known
        return known

    def may_use(self, key: StoredKey) -> bool:
        return self.may_name(key.cryptogram.spec)

    def require_key(self, key: StoredKey, field: str = "key", absent: str = NO_SUCH_KEY) -> None:
        """A key outside the patterns answers exactly as a missing one: NOT_FOUND, ``absent``."""
        if not self.may_use(key):
            raise KeyNotFound(field, absent)

    def require_create(self, spec: KeySpec | BlockTemplate, field: str = "template") -> None:
        """The key about to exist, by its id and zone, is within the patterns."""
        if not self.may_name(spec):
            raise PermissionDenied(field, f"{self.name} may not create this key")


class _PrincipalEntry(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: str
    roles: list[str] = []
    keys: list[str] = []
    methods: list[str] | None = None


class _PolicyFile(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The policy file: ``[[principals]]`` tables, nothing else (a typo is refused, not ignored)."""

    principals: list[_PrincipalEntry] = []


class Policy:
    """Principals by name; unknown names are refused."""

    def __init__(self, principals: Mapping[str, Principal]) -> None:
        self._principals = dict(principals)

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """The policy file; what is wrong in it, as one line naming the file and the key."""
        return cls.from_dict(tomlfile.read(str(path)), source=str(path))

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], source: str = "policy") -> Policy:
        entries = tomlfile.decode(doc, _PolicyFile, source=source).principals
        out: dict[str, Principal] = {}
        for i, p in enumerate(entries):
            def refuse(reason: str, key: str, at: int = i) -> tomlfile.ConfigError:
                return tomlfile.ConfigError(source, ["principals", at, key], reason)

            if not p.name:
                raise refuse("a name", "name")
            if p.name in out:
                raise refuse(f"{p.name} is listed twice", "name")
            try:
                roles = frozenset(Role(r) for r in p.roles)
            except ValueError:
                raise refuse(f"one of {', '.join(r.value for r in Role)}", "roles") from None
            if not roles:
                raise refuse("at least one role", "roles")
            for a, b in INCOMPATIBLE:
                if a in roles and b in roles:
                    raise refuse(f"{a.value} and {b.value} are separate duties", "roles")
            if any(k.startswith("alias:") for k in p.keys):
                raise refuse("patterns match a key's id or zone:<zone>; an alias grants nothing", "keys")
            out[p.name] = Principal(p.name, roles, tuple(p.keys), tuple(p.methods) if p.methods is not None else None)
        return cls(out)

    def principal(self, name: str | None) -> Principal:
        p = self._principals.get(name or "")
        if p is None:
            raise PermissionDenied("principal", "not known to the authorization policy")
        return p

    def __len__(self) -> int:
        return len(self._principals)
