"""A TOML file read onto a schema that refuses what it does not know, with one-line errors.

The schemas are msgspec Structs declared with ``forbid_unknown_fields=True``: a typo
(``listen_adress``, ``[backned]``) is an error, never a setting silently dropped for its
default. Every error is one line naming the file and the key path, TOML-style::

    hsmsvc.toml: listen_adress: unknown key
    hsmsvc.toml: [tls] key: required
    hsmsvc.toml: [backned]: unknown table
    policy.toml: [[principals]] 2 rols: unknown key

msgspec was chosen over pydantic: one package with no dependencies of its own, strict types
by default (a quoted ``"false"`` is not a boolean), and Structs that mypy checks as they are.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeVar

import msgspec

from hsmsvc.errors import InvalidInput

__all__ = ["ConfigError", "decode", "keypath", "read"]

T = TypeVar("T")

_TYPES: Final = {"object": "a table", "array": "an array", "str": "a string", "int": "an integer",
                 "float": "a number", "bool": "true or false", "null": "nothing"}
_AT: Final = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<path>\$[^`]*)`)?$", re.S)
_STEP: Final = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\[\.\.\.\]")


class ConfigError(InvalidInput):
    """A file (or an environment variable, or an option) that says something wrong: ``SOURCE: KEY: REASON``.

    ``field`` is the key's dotted path (``pin.allow_aes_to_tdes_translation``), as other errors name
    theirs; the message shows it as the file spells it (``[pin] allow_aes_to_tdes_translation``).
    """

    def __init__(self, source: str, steps: Sequence[str | int], reason: str, *, table: bool = False,
                 array: bool = False) -> None:
        super().__init__(".".join(str(s) for s in steps) or None, reason)
        self.source, self.steps, self.table, self.array = source, tuple(steps), table, array
        shown = keypath(list(steps), table=table or array)
        if array:
            shown = f"[{shown}]"
        self.args = (f"{source}: {shown}: {reason}" if shown else f"{source}: {reason}",)

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.source, self.steps, self.reason, self.table, self.array))


def _rebuild(source: str, steps: tuple[str | int, ...], reason: str, table: bool, array: bool) -> ConfigError:
    return ConfigError(source, steps, reason, table=table, array=array)


def read(path: str) -> dict[str, Any]:
    """The file's TOML document; unreadable or not TOML is one line naming the file."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(path, [], f"cannot be read ({_reason(e)})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, [], f"not valid TOML ({e})") from None


def _reason(e: OSError) -> str:
    return (e.strerror or type(e).__name__).lower()


def keypath(steps: list[str | int], *, table: bool = False) -> str:
    """``["tls", "key"]`` as ``[tls] key``, ``["principals", 1, "rols"]`` as ``[[principals]] 2 rols``;
    ``table``: the last step is itself a table (``[tls]``)."""
    key = ""
    if not table and steps:
        # The key: its name, and its index when it is an element of a plain array (roles[1]).
        if isinstance(steps[-1], int) and len(steps) > 1:
            key, steps = f"{steps[-2]}[{steps[-1]}]", steps[:-2]
        else:
            key, steps = str(steps[-1]), steps[:-1]
    out: list[str] = []
    dotted: list[str] = []
    for s in steps:
        if isinstance(s, int):
            out.append(f"[[{'.'.join(dotted)}]] {s + 1}")
            dotted = []
        else:
            dotted.append(s)
    if dotted:
        out.append(f"[{'.'.join(dotted)}]")
    return " ".join([*out, key] if key else out)


def _steps(path: str) -> list[str | int]:
    return [m.group(1) if m.group(1) is not None else int(m.group(2)) if m.group(2) else "?"
            for m in _STEP.finditer(path[1:])]


def _at(doc: Any, steps: list[str | int]) -> Any:
    for s in steps:
        try:
            doc = doc[s]
        except (KeyError, IndexError, TypeError):
            return None
    return doc


def decode(doc: Any, schema: type[T], *, source: str, origins: Mapping[str, str] | None = None,
           at: Sequence[str | int] = ()) -> T:
    """``doc`` (parsed TOML) as ``schema``; the first thing wrong as a :class:`ConfigError`.

    ``origins``: top-level keys whose value came from elsewhere than ``source`` (an environment
    variable, an option), which the error names instead. ``at``: where ``doc`` is in its file (a
    table under a name of the user's, which msgspec's paths do not name).
    """
    try:
        return msgspec.convert(doc, schema, strict=True)
    except msgspec.ValidationError as e:
        raise error(doc, str(e), source=source, origins=origins or {}, at=at) from None


def error(doc: Any, message: str, *, source: str, origins: Mapping[str, str],
          at: Sequence[str | int] = ()) -> ConfigError:
    """msgspec's message (``Object contains unknown field `x` - at `$.tls```) as one line for people."""
    m = _AT.match(message)
    msg, steps = (m.group("msg"), _steps(m.group("path") or "$")) if m else (message, [])
    doc = {at[-1]: doc} if at else doc
    for s in reversed(at[:-1]):
        doc = {s: doc}
    steps = [*at, *steps]
    unknown = re.match(r"Object contains unknown field `(.+)`$", msg)
    top = steps[0] if steps else unknown.group(1) if unknown else ""
    source = origins.get(str(top), source)
    if unknown:
        steps = [*steps, unknown.group(1)]
        value = _at(doc, steps)
        if isinstance(value, dict):
            return ConfigError(source, steps, "unknown table", table=True)
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            return ConfigError(source, steps, "unknown table", array=True)
        return ConfigError(source, steps, "unknown key")
    missing = re.match(r"Object missing required field `(.+)`$", msg)
    if missing:
        return ConfigError(source, [*steps, missing.group(1)], "required")
    expected = re.match(r"Expected `([^`]+)`, got `([^`]+)`$", msg)
    if expected:
        want = " or ".join(_TYPES.get(t.strip(), t.strip()) for t in expected.group(1).split("|")
                           if t.strip() != "null")
        return ConfigError(source, steps, f"{want}, not {_TYPES.get(expected.group(2), expected.group(2))}")
    return ConfigError(source, steps, msg[:1].lower() + msg[1:])
