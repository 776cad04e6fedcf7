"""Key-management use cases. Every one is audited by the hierarchy under the caller's name.

Every path is filtered by the caller's key patterns (the key's id and zone): a
key outside them answers exactly as a missing one, so a principal learns nothing
about keys outside its zone.
"""

from __future__ import annotations

import base64
import secrets
import re
from datetime import timedelta
from typing import Final

from hsmsvc.errors import InvalidInput, KeyNotFound, PermissionDenied
from hsmsvc.hsm.commands import Kcv, PublicKey, Sm2Exchange
from hsmsvc.hsm.commands.diversify import derived_algorithm
from hsmsvc.hsm.model import BlockTemplate, KeySpec, LegacyForm
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.model import NAME, KeyRef, StoredKey
from hsmsvc.keys.store.agreements import PendingAgreement
from hsmsvc.service.authz import NO_SUCH_KEY
from hsmsvc.service.context import Caller, Services
from hsmsvc.types import Algorithm, KcvMethod, KeyState, KeyType, KeyUsage, ModeOfUse

_ZONE: Final = re.compile(r"[A-Za-z0-9._:-]{0,64}")

__all__ = [
    "agree_key",
    "export_key",
    "generate_key",
    "get_key",
    "export_tr34_key",
    "import_key",
    "import_tr34_key",
    "key_check_value",
    "list_keys",
    "rotate_key",
    "start_key_agreement",
    "update_key_state",
]


def lifetime(seconds: int) -> timedelta | None:
    """A request's ``lifetime_seconds``: None for no expiry; negative refused."""
    if seconds < 0:
        raise InvalidInput("lifetime", "not negative")
    return timedelta(seconds=seconds) if seconds else None


def use_limit(max_uses: int) -> int | None:
    """A request's ``max_uses``: None for no limit; negative refused."""
    if max_uses < 0:
        raise InvalidInput("max_uses", "not negative")
    return max_uses or None


def new_key_id() -> str:
    return "k-" + secrets.token_hex(8)


def may_create(s: Services, caller: Caller, spec: KeySpec | BlockTemplate, field: str = "template") -> None:
    """The caller's patterns cover the key about to exist, by its id and zone (never its alias).

    A :class:`BlockTemplate`'s id and zone are the final spec's: the block's header gives only
    the algorithm, so checking them before the import is checking the key that is stored.

    A new version of an existing id must also stay in that id's zone and within the
    caller's patterns: else a version made in the caller's zone would be the newest
    of another zone's key, used by its operators under the same id.
    """
    caller.principal.require_create(spec, field)
    versions = s.store.versions(spec.key_id)
    if versions and (versions[-1].cryptogram.spec.zone != spec.zone or not caller.principal.may_use(versions[-1])):
        raise PermissionDenied(field, f"{caller.principal.name} may not create this key")


def _visible(s: Services, caller: Caller, ref: KeyRef) -> StoredKey:
    """The key ``ref`` names, answered as missing when it is outside the caller's patterns."""
    try:
        key = s.manager(caller).lookup(ref)
    except KeyNotFound:
        raise KeyNotFound("key", NO_SUCH_KEY) from None
    caller.principal.require_key(key)
    return key


def generate_key(
    s: Services, caller: Caller, *, spec: KeySpec, alias: str | None, lifetime_s: int, max_uses: int,
    legacy_types: frozenset[KeyType] = frozenset(), legacy_form: LegacyForm = LegacyForm.NONE,
) -> StoredKey:
    may_create(s, caller, spec)
    return s.manager(caller).generate(spec, alias=alias, state=KeyState.ACTIVE, lifetime=lifetime(lifetime_s),
                                      max_uses=use_limit(max_uses), legacy_types=legacy_types, legacy_form=legacy_form)


def import_key(
    s: Services, caller: Caller, *, kek: KeyRef, wrapped: bytes, kcv: bytes | None, spec: KeySpec | BlockTemplate,
    alias: str | None, legacy_types: frozenset[KeyType] = frozenset(), legacy_form: LegacyForm = LegacyForm.NONE,
    lifetime_s: int = 0, max_uses: int = 0, kcv_method: KcvMethod | None = None,
) -> StoredKey:
    """Import under ``kek``; a :class:`BlockTemplate` takes its algorithm from the TR-31 header.

    ``kcv_method``: the form of the stated ``kcv`` (None: CMAC for AES, ECB for TDES and SM4).
    """
    may_create(s, caller, spec)
    expires_in, limit = lifetime(lifetime_s), use_limit(max_uses)
    k = s.key(caller, kek, Operation.KEY_IMPORT_UNDER, "kek")
    return s.manager(caller).import_with(kek=k, wrapped=wrapped, spec=spec, kcv=kcv, state=KeyState.ACTIVE, alias=alias,
                                         legacy_types=legacy_types, legacy_form=legacy_form, lifetime=expires_in,
                                         max_uses=limit, kcv_method=kcv_method)


def agree_key(
    s: Services, caller: Caller, *, kak: KeyRef, peer_public_key: bytes, peer_fingerprint: bytes,
    shared_info: bytes, spec: KeySpec, alias: str | None, legacy_types: frozenset[KeyType] = frozenset(),
    legacy_form: LegacyForm = LegacyForm.NONE, lifetime_s: int = 0, max_uses: int = 0,
    sm2: tuple[str, Sm2Exchange] | None = None,
) -> tuple[StoredKey, bytes]:
    """A key agreed with a partner site from this site's KAK and the partner's public half: ECDH P-521,
    or with ``sm2`` (a started agreement's id and the partner's side) the SM2 key exchange.
    Returns the key and, for SM2, the confirmation hash to send (else empty)."""
    may_create(s, caller, spec)
    expires_in, limit = lifetime(lifetime_s), use_limit(max_uses)
    k = s.key(caller, kak, Operation.KEY_AGREE, "kak")
    manager = s.manager(caller)
    if sm2 is not None:
        if shared_info:
            raise InvalidInput("shared_info", "not used by the SM2 key exchange (GB/T 32918.3 has none): leave empty")
        return manager.agree_sm2(kak=k, agreement_id=sm2[0], exchange=sm2[1], spec=spec, alias=alias,
                                 lifetime=expires_in, max_uses=limit, legacy_types=legacy_types,
                                 legacy_form=legacy_form)
    if k.cryptogram.spec.algorithm is Algorithm.SM2:
        raise InvalidInput("sm2", "required with an SM2 KAK: StartKeyAgreement, then the partner's keys")
    return manager.agree(kak=k, peer_public_key=peer_public_key, peer_fingerprint=peer_fingerprint,
                         shared_info=shared_info, spec=spec, alias=alias, lifetime=expires_in,
                         max_uses=limit, legacy_types=legacy_types, legacy_form=legacy_form), b""


AGREEMENT_TTL: Final = timedelta(minutes=30)
"""How long a started SM2 agreement waits for the partner's ephemeral key (both officers on a call)."""


def start_key_agreement(s: Services, caller: Caller, kak: KeyRef) -> tuple[PendingAgreement, bytes]:
    """An ephemeral SM2 pair for one key exchange with ``kak``: its id and public half to send."""
    k = s.key(caller, kak, Operation.KEY_AGREE, "kak")
    return s.manager(caller).start_sm2(k, AGREEMENT_TTL)


def export_key(s: Services, caller: Caller, kek: KeyRef, key: KeyRef,
               kcv_method: KcvMethod | None = None) -> tuple[bytes, bytes]:
    k = s.key(caller, kek, Operation.KEY_EXPORT_UNDER, "kek")
    x = s.key(caller, key, Operation.KEY_EXPORT)
    check = x.cryptogram.kcv if kcv_method is None else s.backend.execute(Kcv(key=x.cryptogram, method=kcv_method))
    return s.manager(caller).export_with(k, x), check


def diversify_key(s: Services, caller: Caller, *, master: KeyRef, kek: KeyRef, data: bytes, key_type: KeyType,
                  usage: KeyUsage, mode: ModeOfUse) -> tuple[bytes, bytes, int]:
    """A user's key from a KDK and the user's code, as a TR-31 block under ``kek`` (004 6.2.2)."""
    k = s.key(caller, kek, Operation.KEY_EXPORT_UNDER, "kek")
    m = s.key(caller, master, Operation.DIVERSIFY, "master_key")
    spec = KeySpec("diversified", 1, key_type, derived_algorithm(m.cryptogram.spec.algorithm), usage, mode)
    block, check = s.manager(caller).diversify(master=m, kek=k, data=data, derived=spec)
    return block, check, m.version


def import_tr34_key(
    s: Services, caller: Caller, *, krd: KeyRef, token: bytes, kdh_certificate: bytes, ca_certificate: bytes,
    kcv: bytes | None, spec: KeySpec, alias: str | None, lifetime_s: int = 0, max_uses: int = 0,
) -> StoredKey:
    """A key from a KDH's TR-34 one-pass token, unwrapped by this site's KRD key (a KTK)."""
    may_create(s, caller, spec)
    expires_in, limit = lifetime(lifetime_s), use_limit(max_uses)
    k = s.key(caller, krd, Operation.KEY_TRANSPORT_DECRYPT, "krd_key")
    return s.manager(caller).import_tr34(krd=k, token=token, kdh_certificate=kdh_certificate,
                                         ca_certificate=ca_certificate, spec=spec, kcv=kcv, alias=alias,
                                         lifetime=expires_in, max_uses=limit)


def export_tr34_key(
    s: Services, caller: Caller, *, kdh: KeyRef, kdh_certificate: bytes, key: KeyRef, krd_certificate: bytes,
    ca_certificate: bytes,
) -> tuple[bytes, bytes]:
    """``key`` in a TR-34 one-pass token to a KRD, signed by this site's KDH key; with the key's KCV."""
    k = s.key(caller, kdh, Operation.TR34_SIGN, "kdh_key")
    x = s.key(caller, key, Operation.KEY_EXPORT)
    token = s.manager(caller).export_tr34(kdh=k, kdh_certificate=kdh_certificate, key=x,
                                          krd_certificate=krd_certificate, ca_certificate=ca_certificate)
    return token, x.cryptogram.kcv


def get_key(s: Services, caller: Caller, ref: KeyRef) -> StoredKey:
    return _visible(s, caller, ref)


def key_check_value(s: Services, caller: Caller, ref: KeyRef,
                    method: KcvMethod | None = None) -> tuple[bytes, int]:
    """The key's KCV by ``method`` (None: the stored one, CMAC for AES)."""
    key = get_key(s, caller, ref)
    if not key.cryptogram.blob:
        raise KeyNotFound("key", "destroyed")
    s.mode.require_key(key.cryptogram.spec.algorithm)  # it enciphers under the key: a use
    return s.backend.execute(Kcv(key=key.cryptogram, method=method)), key.version


def public_key(s: Services, caller: Caller, ref: KeyRef) -> tuple[bytes, StoredKey]:
    """A KTK's or CTK's public half (SubjectPublicKeyInfo DER) for wrapping keys to this site, or a KAK's
    for a partner to agree keys with."""
    key = s.key(caller, ref, Operation.PUBLIC_KEY)
    return s.backend.execute(PublicKey(key=key.cryptogram)), key


def list_keys(
    s: Services, caller: Caller, *, key_type: KeyType | None, zone: str | None, page_size: int, page_token: str
) -> tuple[list[StoredKey], str]:
    if not 0 <= page_size <= 1000:
        raise InvalidInput("page_size", "0 to 1000")
    size = page_size or 100
    # Names the store would match on are checked here, so no stray byte reaches the database.
    if zone is not None and not _ZONE.fullmatch(zone):
        raise InvalidInput("zone", "0-64 of A-Z a-z 0-9 . _ : -")
    after: tuple[str, int] | None = None
    if page_token:
        try:
            kid, _, v = base64.urlsafe_b64decode(page_token.encode()).decode().rpartition(":")
            after = (kid, int(v))
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput("page_token", "a token from a previous ListKeys") from None
        if not NAME.fullmatch(kid):
            raise InvalidInput("page_token", "a token from a previous ListKeys")
    out: list[StoredKey] = []
    cursor = after
    while True:
        chunk = s.store.list_keys(key_type, zone, cursor, size)
        for k in chunk:
            cursor = (k.key_id, k.version)
            if caller.principal.may_use(k):
                out.append(k)
                if len(out) == size:
                    return out, base64.urlsafe_b64encode(f"{k.key_id}:{k.version}".encode()).decode()
        if len(chunk) < size:
            return out, ""


def rotate_key(s: Services, caller: Caller, ref: KeyRef, lifetime_s: int, max_uses: int) -> tuple[StoredKey, int]:
    """A new version; the ACTIVE one becomes RETIRING. Returns the new key and the previous version."""
    if ref.version is not None:
        raise InvalidInput("key.version", "not allowed: rotation makes the next version")
    current = _visible(s, caller, ref)
    new = s.manager(caller).rotate(current.key_id, lifetime(lifetime_s), use_limit(max_uses))
    return new, current.version


def update_key_state(s: Services, caller: Caller, ref: KeyRef, state: KeyState, reason: str) -> StoredKey:
    if ref.version is None:
        raise InvalidInput("key.version", "required: a state change names one version")
    if len(reason) > 200:
        raise InvalidInput("reason", "at most 200 characters")
    km = s.manager(caller)
    key = _visible(s, caller, ref)
    km.change_state(key.key_id, key.version, state, reason)
    return km.lookup(KeyRef(key.key_id, version=key.version))
