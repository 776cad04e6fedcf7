"""What people type at a ceremony: their names, their components and the KCVs on their mailers.

A custodian who mistypes is told what was wrong and asked again, up to
:data:`ENTRY_TRIES` times, so one typo does not void the components earlier
custodians have already entered (ISO 11568-2 clause 5 asks only that a
component be checked before use, not that a ceremony start over). Names
follow the rule the mailers' file names need, so a name is refused when it is
typed, not after the LMK is written.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hsmsvc.ceremony import mailer
from hsmsvc.ceremony.console import Console, group, parse_hex, zeroize
from hsmsvc.crypto import compare, components, kcv
from hsmsvc.errors import HsmsvcError, InvalidInput, PermissionDenied, VerificationFailed
from hsmsvc.types import Algorithm

__all__ = [
    "ENTRY_TRIES", "NAME_RULE", "Custodian", "check_against_mailer", "check_custodians", "collect", "component",
    "person", "show_once",
]

NAME_TRIES = 3
"""How many times a name the mailer rule refuses may be typed before the ceremony stops."""
ENTRY_TRIES = 3
"""How many times a custodian may enter a component (bad hex, wrong length, KCV mismatch)."""
NAME_RULE = "a name of 1-64 of A-Z a-z 0-9 . _ -"


@dataclass(frozen=True)
class Custodian:
    name: str
    kcv: bytes


def check_custodians(n: int) -> None:
    if not isinstance(n, int) or n < 2:
        raise InvalidInput("custodians", "at least 2 (dual control: no one person holds the LMK)")
    if n > 9:
        raise InvalidInput("custodians", "at most 9")


def person(console: Console, prompt: str, given: str | None, field: str) -> str:
    """A name given on the command line (checked), or asked until it meets :data:`NAME_RULE`."""
    if given is not None:
        if not mailer.CUSTODIAN_NAME.fullmatch(given):
            raise InvalidInput(field, NAME_RULE)
        return given
    for _ in range(NAME_TRIES):
        name = console.ask(prompt)
        if mailer.CUSTODIAN_NAME.fullmatch(name):
            return name
        console.say(f"  {NAME_RULE}; again")
    raise InvalidInput(field, NAME_RULE)


def check_against_mailer(console: Console, prompt: str, check: bytes, i: int, outcome: str) -> None:
    """The custodian types the KCV printed on their mailer; a component that does not give it is refused."""
    typed = console.ask(prompt).replace(" ", "")
    try:
        want = bytes.fromhex(typed)
    except ValueError:
        raise InvalidInput(f"component {i + 1} KCV", "hex digits") from None
    if len(want) < 2 or not compare.bytes_eq(check[: len(want)], want):
        raise VerificationFailed(
            f"component {i + 1}", f"KCV mismatch: the mailer says {want.hex().upper()}, the component entered "
            f"gives {check[: max(len(want), 3)].hex().upper()}; {outcome}")


def component(
    console: Console, prompt: str, algorithm: Algorithm, i: int, *, may_generate: bool,
    kcv_prompt: str | None,
) -> tuple[bytearray, bytes, bool]:
    """One custodian's component, entered (echo off) or drawn; returns it, its KCV and whether it was drawn.

    A mistake is explained and the component asked again, up to :data:`ENTRY_TRIES` times.
    ``kcv_prompt``: the custodian also types the KCV on their mailer, which must match.
    """
    for attempt in range(1, ENTRY_TRIES + 1):
        raw = console.secret(prompt)
        try:
            if not raw.strip() and may_generate:
                part = bytearray(secrets.token_bytes(algorithm.key_length))
                if algorithm.is_tdes:
                    part[:] = components.adjust_odd_parity(bytes(part))
                return part, kcv.kcv(algorithm, bytes(part)), True
            part = parse_hex(raw, f"component {i + 1}")
        except InvalidInput as e:
            _again(console, e, attempt)
            continue
        finally:
            zeroize(raw)
        try:
            if len(part) != algorithm.key_length:
                raise InvalidInput(f"component {i + 1}", f"{2 * algorithm.key_length} hex digits")
            check = kcv.kcv(algorithm, bytes(part))
            if kcv_prompt is not None:
                check_against_mailer(console, kcv_prompt, check, i, "enter the component again")
            return part, check, False
        except HsmsvcError as e:
            zeroize(part)
            _again(console, e, attempt)
        except BaseException:
            zeroize(part)
            raise
    raise InvalidInput(f"component {i + 1}", f"not entered correctly in {ENTRY_TRIES} tries")


def _again(console: Console, e: HsmsvcError, attempt: int) -> None:
    left = ENTRY_TRIES - attempt
    console.say(f"  {e}; " + (f"try again ({left} {'try' if left == 1 else 'tries'} left)" if left else
                              "no tries left"))


def show_once(console: Console, name: str, part: bytes | bytearray, check: bytes) -> None:
    console.ask(f"{name}: make sure only you can see the screen, then press Enter. ")
    try:
        console.say(f"  component  {group(part)}")
        console.say(f"  KCV        {check.hex().upper()}")
        console.ask("Write both down for your envelope, then press Enter to clear the screen. ")
    finally:
        console.clear()  # on Ctrl-C or a closed input too: the component leaves the screen first


def collect(
    console: Console, n: int, algorithm: Algorithm, names: Sequence[str] = (), *,
    may_generate: bool, need_kcv: bool, on_generated: Callable[[int, str, bytearray, bytes], None] | None = None,
) -> tuple[list[bytearray], list[Custodian]]:
    """Each custodian in turn enters a component (echo off) or has one drawn; returns them with their KCVs.

    ``need_kcv``: the custodian also types the KCV from their mailer.
    """
    check_custodians(n)
    parts: list[bytearray] = []
    custodians: list[Custodian] = []
    try:
        for i in range(n):
            name = person(console, f"Custodian {i + 1} of {n}, your name: ", names[i] if i < len(names) else None,
                          "custodian")
            if any(c.name == name for c in custodians):
                raise PermissionDenied("custodian", f"{name} already gave a component (one each)")
            hint = "hex, hidden; Enter alone to draw a random one" if may_generate else "hex, hidden"
            part, check, drawn = component(
                console, f"{name}, component {i + 1} of {n} ({hint}): ", algorithm, i, may_generate=may_generate,
                kcv_prompt=f"{name}, the component KCV on your mailer: " if need_kcv else None)
            parts.append(part)
            if drawn:
                if on_generated is not None:
                    on_generated(i, name, part, check)
                else:
                    show_once(console, name, part, check)
            console.say(f"{name}: component {i + 1} KCV {check.hex().upper()}")
            custodians.append(Custodian(name, check))
        return parts, custodians
    except BaseException:
        for p in parts:
            zeroize(p)
        raise
