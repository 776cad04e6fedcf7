"""The X9.17 key hierarchy over the store: create, look up for use, change state.

Every lookup for use reads the key's row, so a key revoked or suspended by
one process is refused by the next call in any other process on the same
database. Every key-management action is audited in the same transaction as
the change it records.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from datetime import datetime, timedelta, timezone
from typing import Final, Mapping, Sequence

from hsmsvc.errors import (
    AlreadyExists, HsmsvcError, InvalidInput, KeyNotFound, KeyStateError, KeyUsageViolation,
)
from hsmsvc.crypto import sm2ka
from hsmsvc.hsm import policy
from hsmsvc.hsm.backend import Backend
from hsmsvc.hsm.commands import (
    AgreeKey, AgreeSm2Key, CoSigningShare, CreateCoSigningShare, DiversifyKey, ExportInitialKey, ExportKey,
    ExportTr34Key, Forget, FormKey, GenerateKey, ImportKey, ImportPublicKey, ImportTr34Key, PublicKey, Sm2Exchange,
)
from hsmsvc.hsm.commands.agree import check_sm2_request
from hsmsvc.hsm.model import BlockTemplate, KeyCryptogram, KeySpec, LegacyForm
from hsmsvc.hsm.policy import Operation
from hsmsvc.keys.national import CryptoMode
from hsmsvc.keys.model import AuditEvent, KeyRef, StoredKey, check_alias
from hsmsvc.keys.store import KeyStore
from hsmsvc.keys.store.bindings import UNTYPED_FORMS
from hsmsvc.keys.store.agreements import PendingAgreement, ephemeral_spec
from hsmsvc.types import Algorithm, Exportability, KcvMethod, KeyState, KeyType, KeyUsage, ModeOfUse

__all__ = ["KeyManager", "check_legacy_types", "kek_spec", "require_legacy_opt_in"]

# A RETIRING key still checks what was made under it, and makes nothing new.
_RETIRING_OK: Final = frozenset(
    {Operation.PIN_DECRYPT, Operation.MAC_VERIFY, Operation.DATA_DECRYPT, Operation.KEY_IMPORT_UNDER,
     Operation.PIN_VERIFY_IBM3624, Operation.PIN_VERIFY_PVV, Operation.KEY_TRANSPORT_DECRYPT,
     Operation.SIGNATURE_VERIFY, Operation.DUKPT_PIN_DECRYPT}
)
_TRANSITIONS: Final = {
    KeyState.PENDING: frozenset({KeyState.ACTIVE, KeyState.REVOKED, KeyState.DESTROYED}),
    KeyState.ACTIVE: frozenset({KeyState.RETIRING, KeyState.SUSPENDED, KeyState.REVOKED}),
    KeyState.RETIRING: frozenset({KeyState.REVOKED, KeyState.DESTROYED}),
    KeyState.SUSPENDED: frozenset({KeyState.ACTIVE, KeyState.REVOKED}),
    KeyState.REVOKED: frozenset({KeyState.DESTROYED}),
    KeyState.DESTROYED: frozenset(),
}


def _detail(c: KeyCryptogram, **extra: str) -> tuple[tuple[str, str], ...]:
    s = c.spec
    base = {
        "type": s.key_type.value, "algorithm": s.algorithm.value, "usage": s.usage.value,
        "kcv": c.kcv.hex().upper(), "zone": s.zone,
    }
    base.update(extra)
    return tuple(sorted(base.items()))


def _form_detail(kek: StoredKey) -> dict[str, str]:
    """The form a key crossed a K0 KEK in, for the audit record (TR-31 under a K1: nothing)."""
    return {"form": kek.legacy_form.value} if kek.legacy_form is not LegacyForm.NONE else {}


def check_legacy_types(spec: KeySpec, legacy_types: frozenset[KeyType],
                       legacy_form: LegacyForm = LegacyForm.NONE) -> None:
    """Only a K0 ZMK or TMK opts in to a legacy form, naming the form and the types it may carry.

    The form is chosen explicitly: none is assumed, since each partner HSM reads only its own.
    """
    if not isinstance(legacy_form, LegacyForm):
        raise InvalidInput("legacy_form", "a LegacyForm")
    if not legacy_types and legacy_form is LegacyForm.NONE:
        return
    if spec.usage is not KeyUsage.KEK:
        field = "legacy_key_types" if legacy_types else "legacy_form"
        raise InvalidInput(field, "only for a K0 (legacy ECB) ZMK or TMK")
    if not legacy_types:
        raise InvalidInput("legacy_key_types", "the key types the legacy form may carry, e.g. ZPK,MAK")
    if legacy_form is LegacyForm.NONE:
        raise InvalidInput("legacy_form", "X917_ECB, PAYSHIELD_VARIANT or HSMSVC_VARIANT for a K0 ZMK or TMK")
    if legacy_types & policy.TR31_ONLY:
        # An ECB form binds no key type: policy.TR31_ONLY says what a key taken in again as a DEK would give.
        names = ", ".join(sorted(t.value for t in legacy_types & policy.TR31_ONLY))
        raise InvalidInput("legacy_key_types", f"{names}: only in a TR-31 key block under a K1 KEK")
    if not legacy_types <= policy.EXPORTABLE_UNDER.get(spec.key_type, frozenset()):
        raise InvalidInput("legacy_key_types", f"types a {spec.key_type.value} may carry")
    if legacy_form is LegacyForm.PAYSHIELD_VARIANT and not spec.algorithm.is_tdes:
        raise InvalidInput("legacy_form", "PAYSHIELD_VARIANT needs a TDES ZMK or TMK")


def require_legacy_opt_in(kek: StoredKey, key_type: KeyType) -> None:
    """The legacy ECB form is opt-in per KEK and per key type; TR-31 (K1) needs none."""
    if kek.cryptogram.spec.usage is KeyUsage.KEK and (
        key_type not in kek.legacy_types or kek.legacy_form is LegacyForm.NONE
    ):
        raise KeyUsageViolation(
            "kek", f"has not opted in to a legacy ECB form for {key_type.value}; use a TR-31 (K1) KEK"
        )


def kek_spec(kind: KeyType, *, key_id: str, algorithm: str, usage: str, zone: str,
             legacy_types: frozenset[KeyType] = frozenset(),
             legacy_form: LegacyForm = LegacyForm.NONE) -> KeySpec:
    """A ZMK or TMK bound as ``hsmsvc ceremony zmk|tmk form`` binds one (``ceremony/forming.py``
    ``template``), for ``hsmsvc ceremony key form`` and ``hsmsvc dev seed``: ``usage`` K1 is a KBPK
    (TR-31 key blocks), K0 a KEK (the legacy ECB form, for ``legacy_types`` only); mode of use B;
    never exportable."""
    if kind not in (KeyType.ZMK, KeyType.TMK):
        raise InvalidInput("key_type", "a ZMK or a TMK")
    try:
        alg = Algorithm[algorithm]
    except KeyError:
        raise InvalidInput("algorithm", "TDES_2KEY, TDES_3KEY, AES_128, AES_192, AES_256 or SM4") from None
    if usage not in ("K0", "K1"):
        raise InvalidInput("usage", "K0 or K1")
    spec = KeySpec(key_id, 1, kind, alg, KeyUsage.KBPK if usage == "K1" else KeyUsage.KEK,
                   ModeOfUse.ENCRYPT_DECRYPT, Exportability.NON_EXPORTABLE, zone)
    # A K0 key that opts in to no type could carry nothing: say so now, not at the first import.
    if usage == "K0" and not legacy_types:
        raise InvalidInput("legacy_types", f"a K0 {kind.value} needs the key types it may carry, e.g. ZPK,MAK")
    check_legacy_types(spec, legacy_types, legacy_form)
    return spec


class KeyManager:
    """Key life cycle for one actor (an operator, a service identity, a batch job)."""

    def __init__(self, store: KeyStore, backend: Backend, actor: str, mode: CryptoMode = CryptoMode()) -> None:
        self._store = store
        self._backend = backend
        self._actor = actor
        self._mode = mode

    def _keep(self, *, c: KeyCryptogram, action: str, state: KeyState, alias: str | None,
              lifetime: timedelta | None, max_uses: int | None,
              legacy_types: frozenset[KeyType] = frozenset(), legacy_form: LegacyForm = LegacyForm.NONE,
              one_binding: bool = False, detail: Mapping[str, str] | None = None, **extra: str) -> StoredKey:
        extra = {**(detail or {}), **extra}
        if alias is not None:
            check_alias(alias)
        # The backstop: a key whose algorithm only the backend learned (a TR-31 header's) is refused here.
        self._mode.require_key(c.spec.algorithm, "template.algorithm")
        check_legacy_types(c.spec, legacy_types, legacy_form)
        if legacy_types:
            # Choosing a KEK's legacy form is a key-management action: the audit names it.
            extra["legacy_types"] = ",".join(sorted(t.value for t in legacy_types))
            extra["legacy_form"] = legacy_form.value
        now = datetime.now(timezone.utc)
        key = StoredKey(
            c, state, now, alias,
            now if state is KeyState.ACTIVE else None,
            now + lifetime if lifetime else None,
            0, max_uses, None, legacy_types, legacy_form,
        )
        self._store.add(key, AuditEvent(self._actor, action, c.spec.key_id, c.spec.version, _detail(c, **extra)),
                        one_binding=one_binding)
        return key

    def generate(self, spec: KeySpec, *, alias: str | None = None, state: KeyState = KeyState.ACTIVE,
                 lifetime: timedelta | None = None, max_uses: int | None = None,
                 legacy_types: frozenset[KeyType] = frozenset(),
                 legacy_form: LegacyForm = LegacyForm.NONE) -> StoredKey:
        check_legacy_types(spec, legacy_types, legacy_form)
        self._mode.require_key(spec.algorithm, "template.algorithm")
        return self._keep(c=self._backend.execute(GenerateKey(spec=spec)), action="key.generate", state=state,
                          alias=alias, lifetime=lifetime, max_uses=max_uses, legacy_types=legacy_types,
                          legacy_form=legacy_form)

    def import_public(self, spec: KeySpec, public_key: bytes, *, alias: str | None = None,
                      lifetime: timedelta | None = None) -> StoredKey:
        """A partner's public key bound under the LMK as a verify-only SIG (audited ``key.import``)."""
        self._mode.require_key(spec.algorithm, "template.algorithm")
        c = self._backend.execute(ImportPublicKey(spec=spec, public_key=public_key))
        return self._keep(c=c, action="key.import", state=KeyState.ACTIVE, alias=alias, lifetime=lifetime,
                          max_uses=None, form="public_key")

    def create_share(self, spec: KeySpec, client_share: bytes, *, alias: str | None = None,
                     lifetime: timedelta | None = None,
                     max_uses: int | None = None) -> tuple[StoredKey, CoSigningShare]:
        """The server's share of a two-party SM2 key for the client's P1 (audited ``key.generate``)."""
        out = self._backend.execute(CreateCoSigningShare(spec=spec, client_share=client_share))
        key = self._keep(c=out.key, action="key.generate", state=KeyState.ACTIVE, alias=alias, lifetime=lifetime,
                         max_uses=max_uses, two_party="server_share")
        return key, out

    def rotate(self, key_id: str, lifetime: timedelta | None = None, max_uses: int | None = None) -> StoredKey:
        """A new version with the same binding, a K0 KEK's legacy opt-in and form included;
        ACTIVE versions become RETIRING (one transaction)."""
        versions = self._store.versions(key_id)
        if not versions:
            raise KeyNotFound("key", "no such key")
        newest = versions[-1]
        kt = newest.cryptogram.spec.key_type
        if kt in policy.NOT_ROTATED:
            # Its terminals or cards hold keys or values made under it: a new random version would turn
            # every one of them into a failure counted against its card.
            raise KeyStateError("key", f"a {kt.value} is not rotated: a new one is a new key, its terminals "
                                "injected or its cards issued anew")
        spec = dataclasses.replace(newest.cryptogram.spec, version=newest.version + 1)
        self._mode.require_key(spec.algorithm)
        c = self._backend.execute(GenerateKey(spec=spec))
        now = datetime.now(timezone.utc)
        key = StoredKey(c, KeyState.ACTIVE, now, newest.alias, now,
                        now + lifetime if lifetime else None, 0, max_uses, None,
                        newest.legacy_types, newest.legacy_form)
        retire = [k.version for k in versions if k.state is KeyState.ACTIVE]
        self._store.add_rotated(key, retire, AuditEvent(
            self._actor, "key.rotate", key_id, spec.version,
            _detail(c, retired=",".join(map(str, retire)))))
        self._backend.execute(Forget(key_id=key_id))
        return key

    def form(self, spec: KeySpec, components: Sequence[bytes | bytearray], alias: str | None = None,
             legacy_types: frozenset[KeyType] = frozenset(),
             legacy_form: LegacyForm = LegacyForm.NONE,
             detail: Mapping[str, str] | None = None) -> tuple[StoredKey, list[bytes]]:
        """Form and store a key from clear components; ``detail`` joins the ``key.form`` audit row
        (a ceremony's id and custodians), written in the transaction that stores the key."""
        check_legacy_types(spec, legacy_types, legacy_form)
        self._mode.require_key(spec.algorithm, "template.algorithm")
        c, kcvs = self._backend.execute(FormKey(spec=spec, components=components))
        extra = {**(detail or {}), **{f"component_{i + 1}_kcv": k.hex().upper() for i, k in enumerate(kcvs)}}
        return self._keep(c=c, action="key.form", state=KeyState.ACTIVE, alias=alias, lifetime=None, max_uses=None,
                          legacy_types=legacy_types, legacy_form=legacy_form, detail=extra), kcvs

    def import_under(self, *, kek_id: str, wrapped: bytes, spec: KeySpec, kcv: bytes | None = None,
                     state: KeyState = KeyState.ACTIVE, alias: str | None = None) -> StoredKey:
        return self.import_with(kek=self.for_use(kek_id, Operation.KEY_IMPORT_UNDER), wrapped=wrapped, spec=spec,
                                kcv=kcv, state=state, alias=alias)

    def import_with(self, *, kek: StoredKey, wrapped: bytes, spec: KeySpec | BlockTemplate, kcv: bytes | None = None,
                    state: KeyState = KeyState.ACTIVE, alias: str | None = None,
                    legacy_types: frozenset[KeyType] = frozenset(), legacy_form: LegacyForm = LegacyForm.NONE,
                    lifetime: timedelta | None = None, max_uses: int | None = None,
                    kcv_method: KcvMethod | None = None) -> StoredKey:
        """Import under a KEK the caller has already looked up and checked, in the KEK's legacy form if K0.

        A :class:`BlockTemplate` (the algorithm from a TR-31 header) is for a K1 KBPK, and not for a
        K0 KEK that opts in to a legacy form: that form is chosen for one stated algorithm.
        """
        require_legacy_opt_in(kek, spec.key_type)
        self._mode.require_key(kek.cryptogram.spec.algorithm, "kek")
        if isinstance(spec, KeySpec):
            check_legacy_types(spec, legacy_types, legacy_form)
            self._mode.require_key(spec.algorithm, "template.algorithm")
        elif kek.cryptogram.spec.usage is not KeyUsage.KBPK:
            raise InvalidInput("template.algorithm", "required under a K0 KEK: only a TR-31 header names it")
        elif legacy_types or legacy_form is not LegacyForm.NONE:
            raise InvalidInput("template.algorithm", "required for a K0 KEK with a legacy form")
        c = self._backend.execute(ImportKey(kek=kek.cryptogram, wrapped=wrapped, spec=spec, kcv=kcv,
                                            form=kek.legacy_form, kcv_method=kcv_method))
        untyped = kek.legacy_form in UNTYPED_FORMS
        try:
            return self._keep(c=c, action="key.import", state=state, alias=alias, lifetime=lifetime,
                              max_uses=max_uses, legacy_types=legacy_types, legacy_form=legacy_form,
                              one_binding=untyped, detail={"kek": f"{kek.key_id} v{kek.version}", **_form_detail(kek)})
        except KeyUsageViolation as e:
            if untyped:  # a value offered with a second binding is a sign of tampering: audited
                self._store.audit(AuditEvent(self._actor, "key.import_refused", c.spec.key_id, c.spec.version,
                                             _detail(c, kek=f"{kek.key_id} v{kek.version}", rule=e.reason,
                                                     **_form_detail(kek))))
            raise

    def agree(self, *, kak: StoredKey, peer_public_key: bytes, peer_fingerprint: bytes, shared_info: bytes,
              spec: KeySpec, alias: str | None = None, lifetime: timedelta | None = None,
              max_uses: int | None = None, legacy_types: frozenset[KeyType] = frozenset(),
              legacy_form: LegacyForm = LegacyForm.NONE) -> StoredKey:
        """Derive and store a key agreed with a partner's public key, under a KAK already looked up and checked.

        The ``key.agree`` row names the KAK and both public keys' fingerprints (what the officers
        compared) and the shared info's SHA-256, in the transaction that stores the key.
        """
        check_legacy_types(spec, legacy_types, legacy_form)
        self._mode.require_key(spec.algorithm, "template.algorithm")
        c = self._backend.execute(AgreeKey(kak=kak.cryptogram, peer_public_key=peer_public_key,
                                           peer_fingerprint=peer_fingerprint, shared_info=shared_info, spec=spec))
        return self._keep(c=c, action="key.agree", state=KeyState.ACTIVE, alias=alias, lifetime=lifetime,
                          max_uses=max_uses, legacy_types=legacy_types, legacy_form=legacy_form,
                          kak=f"{kak.key_id} v{kak.version}", own_fingerprint=kak.cryptogram.kcv.hex().upper(),
                          peer_fingerprint=bytes(peer_fingerprint).hex().upper(),
                          shared_info_sha256=hashlib.sha256(shared_info).hexdigest().upper())

    def start_sm2(self, kak: StoredKey, ttl: timedelta) -> tuple[PendingAgreement, bytes]:
        """A fresh ephemeral pair for one SM2 key exchange with ``kak`` (GB/T 32918.3-2016 clause 6.1,
        A1-A3 / B1-B2), kept under the LMK until this officer's :meth:`agree_sm2` uses it or ``ttl`` passes."""
        spec = kak.cryptogram.spec
        if spec.algorithm is not Algorithm.SM2:
            raise InvalidInput("kak", "an SM2 KAK: a P-521 KAK agrees in one AgreeKey call")
        agreement_id = secrets.token_hex(16)
        c = self._backend.execute(GenerateKey(spec=ephemeral_spec(agreement_id, spec)))
        try:
            public = self._backend.execute(PublicKey(key=c))
        finally:
            self._backend.execute(Forget(key_id=c.spec.key_id))  # r is not kept in clear until used
        a = PendingAgreement(agreement_id, kak.key_id, kak.version, c, self._actor,
                             datetime.now(timezone.utc) + ttl)
        self._store.agreements.start(a, AuditEvent(self._actor, "key.agree.start", kak.key_id, kak.version, (
            ("agreement", agreement_id), ("ephemeral_fingerprint", c.kcv.hex().upper()),
            ("expires_at", a.expires_at.isoformat()))))
        return a, public

    def agree_sm2(self, *, kak: StoredKey, agreement_id: str, exchange: Sm2Exchange, spec: KeySpec,
                  alias: str | None = None, lifetime: timedelta | None = None, max_uses: int | None = None,
                  legacy_types: frozenset[KeyType] = frozenset(),
                  legacy_form: LegacyForm = LegacyForm.NONE) -> tuple[StoredKey, bytes]:
        """Run the exchange with the ephemeral pair this officer started with ``kak``, and store the key;
        returns it and the confirmation to send. Everything that can be checked without the
        secret is checked first; then the agreement is taken (used once, whatever the outcome),
        and a failure from there on is audited as ``key.agree.failed``."""
        check_legacy_types(spec, legacy_types, legacy_form)
        self._mode.require_key(spec.algorithm, "template.algorithm")
        if alias is not None:
            check_alias(alias)
        if not isinstance(agreement_id, str) or len(agreement_id) != 32:
            raise InvalidInput("sm2.agreement_id", "the 32 characters StartKeyAgreement gave")
        check_sm2_request(kak=kak.cryptogram, exchange=exchange, spec=spec)
        if self._store.versions(spec.key_id):
            raise AlreadyExists("template.key_id", "a key with this id exists")
        pending = self._store.agreements.take(agreement_id, kak=kak.cryptogram.spec, started_by=self._actor)
        if pending is None:
            raise KeyNotFound("sm2.agreement_id", "no such agreement started by you for this KAK: start one")
        peer_ephemeral = sm2ka.fingerprint(exchange.peer_ephemeral_public_key).hex().upper()
        detail = {"kak": f"{kak.key_id} v{kak.version}", "agreement": agreement_id, "scheme": "SM2 GB/T 32918.3",
                  "role": exchange.role.value, "own_fingerprint": kak.cryptogram.kcv.hex().upper(),
                  "peer_fingerprint": bytes(exchange.peer_fingerprint).hex().upper(),
                  "peer_ephemeral_fingerprint": peer_ephemeral, "own_id": exchange.own_id.hex().upper(),
                  "peer_id": exchange.peer_id.hex().upper()}
        try:
            if pending.expires_at <= datetime.now(timezone.utc):
                raise KeyStateError("sm2.agreement_id", "expired: start a new one")
            done = self._backend.execute(AgreeSm2Key(kak=kak.cryptogram, ephemeral=pending.ephemeral,
                                                     exchange=exchange, spec=spec))
            key = self._keep(c=done.key, action="key.agree", state=KeyState.ACTIVE, alias=alias,
                             lifetime=lifetime, max_uses=max_uses, legacy_types=legacy_types,
                             legacy_form=legacy_form, detail=detail)
        except HsmsvcError as e:
            self._store.chain.append(AuditEvent(self._actor, "key.agree.failed", kak.key_id, kak.version, tuple(
                sorted({**detail, "reason": str(e)}.items()))))
            raise
        finally:
            self._backend.execute(Forget(key_id=pending.ephemeral.spec.key_id))
        return key, done.confirmation

    def import_tr34(self, *, krd: StoredKey, token: bytes, kdh_certificate: bytes, ca_certificate: bytes,
                    spec: KeySpec, kcv: bytes | None = None, alias: str | None = None,
                    lifetime: timedelta | None = None, max_uses: int | None = None) -> StoredKey:
        """A key from a KDH's TR-34 token, unwrapped by a KRD key the caller has already looked up and checked.

        Audited with the KDH certificate's SHA-256, so the audit says which KDH sent it.
        """
        self._mode.require_key(spec.algorithm, "template.algorithm")
        c = self._backend.execute(ImportTr34Key(krd=krd.cryptogram, token=token, kdh_certificate=kdh_certificate,
                                                ca_certificate=ca_certificate, spec=spec, kcv=kcv))
        return self._keep(c=c, action="key.import", state=KeyState.ACTIVE, alias=alias, lifetime=lifetime,
                          max_uses=max_uses, kek=f"{krd.key_id} v{krd.version}", form="TR34",
                          kdh_certificate_sha256=hashlib.sha256(kdh_certificate).hexdigest())

    def export_tr34(self, *, kdh: StoredKey, kdh_certificate: bytes, key: StoredKey, krd_certificate: bytes,
                    ca_certificate: bytes) -> bytes:
        """``key`` in a TR-34 token to a KRD, signed by a KDH key the caller has already looked up and checked."""
        out = self._backend.execute(ExportTr34Key(kdh=kdh.cryptogram, kdh_certificate=kdh_certificate,
                                                  key=key.cryptogram, krd_certificate=krd_certificate,
                                                  ca_certificate=ca_certificate))
        self._store.audit(AuditEvent(self._actor, "key.export", key.key_id, key.version,
                                     _detail(key.cryptogram, kek=f"{kdh.key_id} v{kdh.version}", form="TR34",
                                             krd_certificate_sha256=hashlib.sha256(krd_certificate).hexdigest())))
        return out

    def export_under(self, kek_id: str, key_id: str) -> bytes:
        return self.export_with(self.for_use(kek_id, Operation.KEY_EXPORT_UNDER),
                                self.for_use(key_id, Operation.KEY_EXPORT))

    def export_with(self, kek: StoredKey, key: StoredKey) -> bytes:
        """Export ``key`` under a KEK the caller has already looked up and checked."""
        require_legacy_opt_in(kek, key.cryptogram.spec.key_type)
        out = self._backend.execute(ExportKey(kek=kek.cryptogram, key=key.cryptogram, form=kek.legacy_form))
        self._store.audit(AuditEvent(self._actor, "key.export", key.key_id, key.version,
                                     _detail(key.cryptogram, kek=f"{kek.key_id} v{kek.version}",
                                             **_form_detail(kek))))
        return out

    def export_initial_key(self, *, bdk: StoredKey, kek: StoredKey, initial: bytes) -> tuple[bytes, bytes]:
        """A DUKPT terminal's initial key, derived from ``bdk`` for ``initial`` (its initial KSN or key
        ID) and wrapped under ``kek`` as a TR-31 block, with its KCV: keys the caller has already
        looked up and checked. Audited as an export of the BDK, naming the terminal."""
        out = self._backend.execute(ExportInitialKey(bdk=bdk.cryptogram, kek=kek.cryptogram, initial=initial))
        self._store.audit(AuditEvent(self._actor, "key.export_initial_key", bdk.key_id, bdk.version,
                                     _detail(bdk.cryptogram, kek=f"{kek.key_id} v{kek.version}", form="TR31",
                                             initial_key_id=bytes(initial).hex().upper(),
                                             initial_key_kcv=out[1].hex().upper())))
        return out

    def diversify(self, *, master: StoredKey, kek: StoredKey, data: bytes, derived: KeySpec) -> tuple[bytes, bytes]:
        """A user's key derived from the KDK ``master`` and ``data`` (the user's code), wrapped under
        ``kek`` as a TR-31 block, with its KCV (004 clause 6.2.2); audited on the KDK with the code."""
        out = self._backend.execute(DiversifyKey(master=master.cryptogram, kek=kek.cryptogram, data=data,
                                                 derived=derived))
        self._store.audit(AuditEvent(self._actor, "key.diversify", master.key_id, master.version,
                                     _detail(master.cryptogram, kek=f"{kek.key_id} v{kek.version}", form="TR31",
                                             diversification_data=bytes(data).hex().upper(),
                                             derived_type=derived.key_type.value, derived_usage=derived.usage.value,
                                             derived_kcv=out[1].hex().upper())))
        return out

    def lookup(self, ref: KeyRef) -> StoredKey:
        if ref.key_id:
            return self._store.get(ref.key_id, ref.version)
        return self._store.get_by_alias(ref.alias, ref.version)

    def for_use(self, key: str | KeyRef, op: Operation, version: int | None = None) -> StoredKey:
        """The key version to use for ``op``, refused unless its state and binding allow it."""
        ref = key if isinstance(key, KeyRef) else KeyRef(key, version=version)
        return self.check_use(self.lookup(ref), op)

    @staticmethod
    def check_use(key: StoredKey, op: Operation) -> StoredKey:
        """Refuse ``key`` for ``op`` unless its binding, state, expiry and use limit allow it."""
        s = key.cryptogram.spec
        policy.require(s.key_type, s.usage, s.mode_of_use, op, s.exportability)
        if key.state is KeyState.RETIRING and op in _RETIRING_OK:
            return key
        # A key change's version the branch has not confirmed yet (004 clause 7.1) reads what was
        # made under it from the activation time: the core made it, so only the core or a branch
        # that applied the notice can have made a block under it, and the branch switches at the
        # activation time whether or not its confirmation has arrived. It makes nothing new until
        # the confirmation proves the branch can read it.
        inbound = key.state is KeyState.PENDING and key.activates_at is not None and op in _RETIRING_OK
        if key.state is not KeyState.ACTIVE and not inbound:
            raise KeyStateError("key", f"a {key.state.value} key may not be used for {op.value}")
        if key.activates_at is not None or key.expires_at is not None:
            now = datetime.now(timezone.utc)
            if key.activates_at is not None and key.activates_at > now:
                raise KeyStateError("key", "not active yet (its key change activates later)")
            if key.expires_at is not None and key.expires_at <= now:
                raise KeyStateError("key", "expired")
        # max_uses triggers a new version; use is refused only at twice it (hard stop).
        if key.max_uses is not None and key.use_count >= 2 * key.max_uses:
            raise KeyStateError("key", "use limit reached")
        return key

    def change_state(self, key_id: str, version: int, state: KeyState, reason: str = "") -> None:
        key = self._store.get(key_id, version)
        if state not in _TRANSITIONS[key.state]:
            raise KeyStateError("state", f"{key.state.value} may not become {state.value}")
        self._store.set_state(
            key_id, version, state,
            AuditEvent(self._actor, f"key.{state.value.lower()}", key_id, version,
                       _detail(key.cryptogram, reason=reason, previous=key.state.value)),
        )
        if state is not KeyState.ACTIVE:
            self._backend.execute(Forget(key_id=key_id))

    def revoke(self, key_id: str, version: int, reason: str = "") -> None:
        self.change_state(key_id, version, KeyState.REVOKED, reason)
