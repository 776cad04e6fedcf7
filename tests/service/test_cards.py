"""The Luhn check (ISO/IEC 7812-1 annex B) against tests/reference.py's digit-by-digit one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsmsvc.errors import InvalidInput
from hsmsvc.service.cards import checked_pan, luhn_valid, refused_pans
from tests.reference import luhn_valid as reference_luhn


def test_published_examples() -> None:
    # 79927398713: the worked example of the Wikipedia article "Luhn algorithm";
    # 4012345678909 and 4111111111111111: the card networks' published test PANs.
    for good in ("79927398713", "4012345678909", "4111111111111111"):
        assert luhn_valid(good)
    for bad in ("79927398710", "4012345678901", "4111111111111112", "", "12a4", "\u0661\u0662\u0663"):
        assert not luhn_valid(bad)


@given(st.text(alphabet="0123456789", min_size=1, max_size=19))
def test_agrees_with_the_reference_on_digit_strings(number: str) -> None:
    assert luhn_valid(number) == reference_luhn(number)


@given(st.text(max_size=20))
def test_agrees_with_the_reference_on_any_text(text: str) -> None:
    assert luhn_valid(text) == reference_luhn(text)


def test_checked_pan_refuses_a_bad_check_digit_before_anything_else() -> None:
    assert checked_pan("4012345678909") == "4012345678909" and checked_pan(None) is None
    with pytest.raises(InvalidInput, match="^pan: "):
        checked_pan("4012345678901")


def _reference_refused(pans: list[str | None]) -> list[int]:
    return [i for i, p in enumerate(pans) if p and not (12 <= len(p) <= 19 and reference_luhn(p))]


@given(st.integers(12, 19).flatmap(
    lambda n: st.lists(st.text(alphabet="0123456789", min_size=n, max_size=n), min_size=1, max_size=300)))
def test_a_batch_of_one_length_is_refused_as_one_by_one(pans: list[str]) -> None:
    # The column-at-a-time path: every PAN present, one length, all digits.
    refused = refused_pans(pans)
    assert sorted(refused) == _reference_refused(list(pans))
    assert all(str(e).startswith("pan: ") for e in refused.values())


@given(st.lists(st.one_of(st.none(), st.text(alphabet="0123456789", max_size=20), st.text(max_size=20)),
                max_size=40))
def test_any_batch_is_refused_as_one_by_one(pans: list[str | None]) -> None:
    assert sorted(refused_pans(pans)) == _reference_refused(pans)


def test_a_batch_of_nineteen_nines_does_not_carry_between_pans() -> None:
    # The largest digit sum a PAN can reach (19 digits, every doubled 9 counting 9) is 171: it must
    # stay in its own byte. 9999999999999999999 sums to 171 (not a multiple of ten): refused.
    pans = ["9" * 19, "4012345678909".rjust(19, "0"), "9" * 19]
    assert sorted(refused_pans(pans)) == _reference_refused(list(pans)) == [0, 2]
