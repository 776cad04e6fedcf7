"""Redaction of card data for logs, audit records, errors and metrics.

PCI DSS v4.0 requirement 3.4.1 allows at most the first six and last four
digits of a PAN to be displayed; hsmsvc shows no more than that anywhere.
"""

from __future__ import annotations

__all__ = ["mask_pan"]


def mask_pan(pan: str | None) -> str:
    """First six and last four digits at most, the rest as ``*``.

    >>> mask_pan("4012345678909")
    '401234***8909'
    >>> mask_pan("12345")
    '*****'
    """
    if not pan:
        return ""
    if len(pan) < 13:
        return "*" * len(pan)
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]
