"""Error codes: the one table mapping hsmsvc's refusals to payShield's two-digit codes.

It sits beside the gRPC status table (``api/status.py``): the same error class decides both, so a
refusal reads alike through either door. ``docs/host-commands.md`` lists both columns.
"""

from __future__ import annotations

from typing import Final

from hsmsvc import errors

__all__ = ["CODES", "HostError", "code_for"]

OK: Final = "00"
VERIFICATION_FAILED: Final = "01"
SOURCE_KEY: Final = "10"
DESTINATION_KEY: Final = "11"
INVALID_INPUT: Final = "15"
NOT_AUTHORIZED: Final = "17"
PIN_BLOCK: Final = "20"
ACCOUNT: Final = "22"
PIN_FORMAT: Final = "23"
DECIMALIZATION: Final = "25"
KEY_SCHEME: Final = "26"
KEY_TYPE: Final = "04"
KEY_LENGTH_FLAG: Final = "05"
KEY_FUNCTION: Final = "29"
FRAUD_LIMIT: Final = "39"
INTERNAL: Final = "41"
ALGORITHM: Final = "47"
DATA_LENGTH: Final = "80"
KEY_BLOCK: Final = "A4"
DISABLED: Final = "68"
LMK_UNAVAILABLE: Final = "13"
# The MAC and data commands (M0-M8) give codes 02-09 their own meanings, field by field.
M_MODE: Final = "02"
M_INPUT_FORMAT: Final = "03"
M_OUTPUT_FORMAT: Final = "04"
M_MAC_ALGORITHM: Final = "04"
M_KEY_TYPE: Final = "05"
M_MESSAGE_LENGTH: Final = "06"
M_DESTINATION_MODE: Final = "07"
M_DESTINATION_KEY_TYPE: Final = "08"
M_PADDING: Final = "09"
# KQ (ARQC verification) gives 04, 05 and 81 its own meanings.
KQ_MODE: Final = "04"
KQ_SCHEME: Final = "05"
KQ_NO_DATA: Final = "81"


class HostError(Exception):
    """A refusal found while reading a command's fields: its code and the field's name (never its value)."""

    def __init__(self, code: str, field: str) -> None:
        self.code = code
        self.field = field
        super().__init__(f"{field}: error {code}")


# Most specific first: the first class an error is an instance of decides (as api/status.py's CODES).
CODES: Final[tuple[tuple[type[errors.HsmsvcError], str], ...]] = (
    (errors.InvalidPinBlock, PIN_BLOCK),
    (errors.InvalidKeyBlock, KEY_BLOCK),
    (errors.InvalidInput, INVALID_INPUT),
    (errors.KeyNotFound, SOURCE_KEY),
    (errors.AlreadyExists, INVALID_INPUT),
    (errors.KeyUsageViolation, KEY_FUNCTION),
    (errors.KeyStateError, KEY_FUNCTION),
    (errors.ModeRefused, ALGORITHM),
    (errors.Unsupported, DISABLED),
    (errors.PermissionDenied, NOT_AUTHORIZED),
    (errors.AttemptsExceeded, FRAUD_LIMIT),
    (errors.Overloaded, INTERNAL),
    # The store or every backend member down: payShield's own "internal error", which an
    # application answers by trying its next HSM. A sealed LMK is LMK_UNAVAILABLE (listener).
    (errors.BackendUnavailable, INTERNAL),
    (errors.VerificationFailed, VERIFICATION_FAILED),
)


def code_for(e: errors.HsmsvcError, destinations: frozenset[str] = frozenset()) -> str:
    """The code for ``e``; a key refusal naming one of ``destinations`` is the destination key's (11)."""
    for cls, code in CODES:
        if isinstance(e, cls):
            if code == SOURCE_KEY and e.field in destinations:
                return DESTINATION_KEY
            return code
    return INTERNAL
