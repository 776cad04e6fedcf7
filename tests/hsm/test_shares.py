"""The share-sealed LMK (issue 29): Shamir shares of the sealing key, their text, and the file.

Expected values come from an independent path: the share text is read with this
file's own regular expression, the halves recombined with pycryptodome's Shamir
directly, and the file opened with pyca's AESGCM over the header as the file
holds it; nothing from hsmsvc computes them.
"""

from __future__ import annotations

import binascii
import itertools
import json
import re
import secrets
import string
from pathlib import Path

import pytest
from Crypto.Protocol.SecretSharing import Shamir
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from hsmsvc.errors import InvalidInput, KeyStateError, PermissionDenied
from hsmsvc.hsm.soft import sealed, shares, sharesealed
from hsmsvc.hsm.soft.unsealing import RESET, Opened, Progress, Unsealer
from hsmsvc.types import Algorithm

SHARE = re.compile(r"([0-9A-F]{8})-([1-9])-((?:[0-9A-F]{4}-){16})([0-9A-F]{4})")
NAMES = ["alice", "bob", "carol", "dan", "erin", "fay", "gus", "hal", "ida"]


def _read(text: str) -> tuple[str, int, bytes]:
    m = SHARE.fullmatch(text)
    assert m, text
    return m.group(1), int(m.group(2)), bytes.fromhex(m.group(3).replace("-", ""))


def _reference_open(blob: bytes, picked: list[tuple[int, bytes]]) -> bytes:
    """Recombine both halves with pycryptodome and open the file with pyca: the expected LMK."""
    lo = Shamir.combine([(i, v[:16]) for i, v in picked])
    hi = Shamir.combine([(i, v[16:]) for i, v in picked])
    doc = json.loads(blob)
    aad = json.dumps(doc["header"], sort_keys=True, separators=(",", ":")).encode()
    return AESGCM(lo + hi).decrypt(bytes.fromhex(doc["nonce"]), bytes.fromhex(doc["ciphertext"]), aad)


def _texts(made: list[shares.Share]) -> list[str]:
    return [shares.text(seal=s.seal, index=s.index, value=s.value) for s in made]


def test_the_check_is_crc16_ccitt_false() -> None:
    # The CRC catalogue's check value for CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over "123456789".
    assert binascii.crc_hqx(b"123456789", 0xFFFF) == 0x29B1


@given(k=st.integers(2, 5), extra=st.integers(0, 4), data=st.data())
def test_any_k_of_n_open_the_file_and_k_minus_1_do_not(k: int, extra: int, data: st.DataObject) -> None:
    n = min(k + extra, 9)
    lmk = secrets.token_bytes(32)
    blob, header, made = sharesealed.seal(Algorithm.AES_256, lmk, threshold=k, holders=NAMES[:n])
    doc = json.loads(blob)["header"]
    assert (doc["threshold"], [h["name"] for h in doc["holders"]]) == (k, NAMES[:n])
    assert lmk.hex() not in blob.decode().lower()
    texts = _texts(made)
    parsed = [_read(t) for t in texts]
    assert {p for p, _, _ in parsed} == {header.seal_id[:8]} and [i for _, i, _ in parsed] == list(range(1, n + 1))
    assert all(v.hex().upper() not in blob.decode().upper() for _, _, v in parsed)
    picked = data.draw(st.permutations(range(n))).__getitem__(slice(k))
    ref = [(parsed[i][1], parsed[i][2]) for i in picked]
    assert _reference_open(blob, ref) == lmk
    assert sharesealed.unseal(blob, [shares.parse(texts[i]) for i in picked])[1] == lmk
    # k-1 shares: interpolating them gives some other key, which the tag refuses.
    fewer = ref[:-1]
    wrong = Shamir.combine([(i, v[:16]) for i, v in fewer]) + Shamir.combine([(i, v[16:]) for i, v in fewer])
    assert wrong != b""
    with pytest.raises(InvalidTag):
        AESGCM(wrong).decrypt(bytes.fromhex(json.loads(blob)["nonce"]),
                              bytes.fromhex(json.loads(blob)["ciphertext"]),
                              json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
    with pytest.raises(InvalidInput, match=f"{k} shares open this LMK"):
        sharesealed.unseal(blob, [shares.parse(texts[i]) for i in picked[:-1]])


@given(value=st.binary(min_size=32, max_size=32), index=st.integers(1, 9), data=st.data())
def test_the_check_digits_catch_any_single_mistyped_character(value: bytes, index: int, data: st.DataObject) -> None:
    text = shares.text(seal="0A1B2C3D", index=index, value=value)
    assert shares.parse(text).value == value and shares.parse(text.lower()).index == index
    pos = data.draw(st.integers(0, len(text) - 1))
    typed = data.draw(st.sampled_from(string.printable.strip() + " "))
    if typed.upper() == text[pos].upper() or (typed in " -" and text[pos] == "-"):
        return  # the same character, or one separator for another: not a typo
    wrong = text[:pos] + typed + text[pos + 1:]
    with pytest.raises(InvalidInput, match="mistyped"):
        shares.parse(wrong)
    # Two neighbours swapped (a dash moved is no change), and a character dropped or doubled.
    if pos + 1 < len(text) and text[pos] != text[pos + 1] and "-" not in text[pos:pos + 2]:
        with pytest.raises(InvalidInput, match="mistyped"):
            shares.parse(text[:pos] + text[pos + 1] + text[pos] + text[pos + 2:])
    if text[pos] != "-":
        for bad in (text[:pos] + text[pos + 1:], text[:pos] + text[pos] + text[pos:]):
            with pytest.raises(InvalidInput, match="mistyped"):
                shares.parse(bad)


def test_every_single_character_substitution_of_one_share_is_caught() -> None:
    """Exhaustively, for one share: every position, every hex digit in its place."""
    text = _texts(sharesealed.seal(Algorithm.AES_256, secrets.token_bytes(32), threshold=2,
                                   holders=["a", "b"])[2])[0]
    for pos, c in enumerate(text):
        if c == "-":
            continue
        for typed in "0123456789ABCDEF":
            if typed != c:
                with pytest.raises(InvalidInput, match="mistyped"):
                    shares.parse(text[:pos] + typed + text[pos + 1:])


def test_a_well_formed_wrong_share_fails_only_at_opening_with_one_message() -> None:
    lmk = secrets.token_bytes(32)
    blob, header, made = sharesealed.seal(Algorithm.AES_256, lmk, threshold=2, holders=["a", "b", "c"])
    good = [shares.parse(t) for t in _texts(made)]
    messages = set()
    for wrong_at in range(3):
        for pair in itertools.combinations(range(3), 2):
            if wrong_at not in pair:
                continue
            given_ = []
            for i in pair:
                v = bytearray(good[i].value)
                if i == wrong_at:
                    v[secrets.randbelow(32)] ^= 1 + secrets.randbelow(255)
                # Re-written with valid check digits: well-formed, so only the opening can tell.
                given_.append(shares.parse(shares.text(seal=header.prefix, index=i + 1, value=v)))
            with pytest.raises(PermissionDenied) as e:
                sharesealed.unseal(blob, given_)
            messages.add(str(e.value))
    assert messages == {f"shares: {sharesealed.DO_NOT_OPEN}"}
    # A share of another seal of the same LMK is just as wrong.
    other = sharesealed.seal(Algorithm.AES_256, lmk, threshold=2, holders=["a", "b", "c"])[2]
    with pytest.raises(PermissionDenied, match=sharesealed.DO_NOT_OPEN):
        sharesealed.unseal(blob, [good[0], shares.parse(_texts(other)[1])])


def test_the_header_is_authenticated() -> None:
    blob, _, made = sharesealed.seal(Algorithm.AES_256, secrets.token_bytes(32), threshold=2, holders=["a", "b", "c"])
    for change in (lambda h: h["holders"][1].update(name="mallory"), lambda h: h.update(kcv="000000"),
                   lambda h: h.update(seal_id="F" * 32)):
        doc = json.loads(blob)
        change(doc["header"])
        with pytest.raises(PermissionDenied, match=sharesealed.DO_NOT_OPEN):
            sharesealed.unseal(json.dumps(doc).encode(), [shares.parse(t) for t in _texts(made)[:2]])


def test_thresholds_and_holders_are_checked() -> None:
    lmk = secrets.token_bytes(32)
    for k, names in ((1, ["a", "b"]), (3, ["a", "b"]), (2, NAMES + ["zed"]), (2, ["a", "a"]), (2, ["a", "b:c"])):
        with pytest.raises(InvalidInput):
            sharesealed.seal(Algorithm.AES_256, lmk, threshold=k, holders=names)


def test_a_passphrase_is_refused_for_a_share_sealed_file_with_a_clear_message() -> None:
    blob = sharesealed.seal(Algorithm.AES_256, secrets.token_bytes(32), threshold=2, holders=["a", "b"])[0]
    with pytest.raises(InvalidInput, match="share-sealed: it opens with its custodians' shares"):
        sealed.unseal(blob, b"a long enough passphrase")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _unsealer(tmp_path: Path, **kw: object) -> tuple[Unsealer, list[str], bytes]:
    lmk = secrets.token_bytes(32)
    blob, _, made = sharesealed.seal(Algorithm.AES_256, lmk, threshold=2, holders=["alice", "bob", "carol"])
    (tmp_path / "lmk.sealed").write_bytes(blob)
    return Unsealer(tmp_path / "lmk.sealed", **kw), _texts(made), lmk  # type: ignore[arg-type]


def test_the_unsealer_takes_one_share_per_index_and_principal_and_resets_on_a_wrong_one(tmp_path: Path) -> None:
    u, texts, lmk = _unsealer(tmp_path)
    p = u.submit(principal="c1", share=texts[0].encode())
    assert isinstance(p, Progress) and p.summary() == "sealed: 1 of 2 shares entered"
    with pytest.raises(KeyStateError, match="index 1 was already entered"):
        u.submit(principal="c2", share=texts[0].encode())
    with pytest.raises(KeyStateError, match="c1 already entered a share"):
        u.submit(principal="c1", share=texts[1].encode())
    with pytest.raises(InvalidInput, match="mistyped"):
        u.submit(principal="c2", share=texts[1][:-1].encode() + b"0" if texts[1][-1] != "0" else b"x")
    assert len(u.status().entered) == 1  # neither refusal changed anything
    wrong = shares.text(seal=u.header.prefix, index=2, value=secrets.token_bytes(32))
    with pytest.raises(PermissionDenied) as e:
        u.submit(principal="c2", share=wrong.encode())
    assert str(e.value) == f"shares: {RESET}" and u.failures == 1 and u.status().entered == ()
    u.submit(principal="c2", share=texts[2].encode())
    opened = u.submit(principal="c1", share=texts[1].encode())
    assert isinstance(opened, Opened) and [(x.principal, x.index) for x in opened.entered] == [("c2", 3), ("c1", 2)]
    assert opened.backend.lmk_kcv() == sharesealed.read_header((tmp_path / "lmk.sealed").read_bytes()).lmk_kcv
    with pytest.raises(KeyStateError, match="opened the LMK"):
        u.submit(principal="c3", share=texts[0].encode())


def test_shares_expire_unless_the_threshold_is_reached_in_time(tmp_path: Path) -> None:
    clock = Clock()
    u, texts, _ = _unsealer(tmp_path, timeout=600.0, clock=clock)
    u.submit(principal="c1", share=texts[0].encode())
    clock.now = 599.0
    assert len(u.status().entered) == 1
    clock.now = 600.5
    assert u.expire() == 1 and u.status().entered == () and u.expired == 1
    u.submit(principal="c1", share=texts[0].encode())
    assert isinstance(u.submit(principal="c2", share=texts[1].encode()), Opened)


def test_the_unsealer_in_development_takes_several_shares_from_one_principal(tmp_path: Path) -> None:
    u, texts, _ = _unsealer(tmp_path, one_per_principal=False)
    u.submit(principal="dev", share=texts[0].encode())
    assert isinstance(u.submit(principal="dev", share=texts[1].encode()), Opened)


def test_a_share_of_another_seal_is_refused_at_once_and_resets_nothing(tmp_path: Path) -> None:
    """The server took a share of another seal (an old envelope, a reseal's previous file) into the
    entry, and at the threshold reset every custodian's progress; the console and `hsmsvc unseal`
    refuse it by its first digits, which are public."""
    u, texts, lmk = _unsealer(tmp_path)
    u.submit(principal="c1", share=texts[0].encode())
    other = _texts(sharesealed.seal(Algorithm.AES_256, lmk, threshold=2, holders=["a", "b", "c"])[2])[1]
    with pytest.raises(InvalidInput, match="another seal|LMK seal"):
        u.submit(principal="c2", share=other.encode())
    assert u.failures == 0 and [e.principal for e in u.status().entered] == ["c1"]
    assert isinstance(u.submit(principal="c2", share=texts[1].encode()), Opened)
