"""Redaction of card data for logs, audit records, errors and metrics.

PCI DSS v4.0 requirement 3.4.1 allows at most the first six and last four
digits of a PAN to be displayed; hsmsvc shows no more than that anywhere.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["mask_pan", "redact_url"]

# A database URL's password, in its user-info part or as a libpq query parameter.
_USERINFO: Final = re.compile(r"(?P<head>://[^/:@?#]*):[^@]*@")  # as SQLAlchemy parses it
_QUERY_SECRET: Final = re.compile(r"(?P<head>[?&](?:password|sslpassword)=)[^&#]*", re.IGNORECASE)


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


def redact_url(url: str) -> str:
    """A database URL fit to print: any password replaced by ``***``.

    >>> redact_url("postgresql+psycopg://bank:s3cret@db.example:5432/core?sslmode=require")
    'postgresql+psycopg://bank:***@db.example:5432/core?sslmode=require'
    >>> redact_url("postgresql://db/core?user=bank&password=s3cret")
    'postgresql://db/core?user=bank&password=***'
    >>> redact_url("sqlite:////var/lib/bank.db")
    'sqlite:////var/lib/bank.db'
    """
    url = _USERINFO.sub(r"\g<head>:***@", url, count=1)
    return _QUERY_SECRET.sub(r"\g<head>***", url)
