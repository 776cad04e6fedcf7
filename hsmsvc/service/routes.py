"""Checked TranslatePin and VerifyPin routes, kept between calls: the first of the hot path's two caches.

A route (:class:`hsmsvc.service.pin.TranslateRoute`,
:class:`hsmsvc.service.verification.VerifyRoute`) is the outcome of every check
a translation, or a check against stored PINs, needs before its block is
touched: the caller's access to both keys, their usage, state and dates, and the
backend's prepared translator (verifier) for them. It is kept under the caller's name and the request's own words
(key ids or aliases, versions and formats, as sent), so a route is only found
again for the same principal saying the same thing, and is used only while
:func:`hsmsvc.service.pinkeys.route_current` holds:

* the key cache (:class:`hsmsvc.keys.cache.KeyCache`) has dropped or changed
  nothing since the route was checked: a revocation, a new version, a state or
  use-count change, in this process or (within its refresh) another;
* no date the checks relied on (expiry, activation, rotation by age) has passed.

The second cache is the backend's, of keys it has loaded (unwrapped) from their
cryptograms; the prepared translator (verifier) checks its keys against it on each call,
so a key the backend dropped (``Backend.forget``) is loaded and verified again.
``docs/architecture.md`` ("When a revoked key stops working") says the same.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Final, TypeVar

from hsmsvc.keys.model import KeyRef
from hsmsvc.service.context import Caller, Services
from hsmsvc.service.pin import TranslateRoute, route_translation
from hsmsvc.service.pinkeys import CheckedRoute, PinSource, route_current
from hsmsvc.service.verification import VerifyRoute
from hsmsvc.types import PinBlockFormat

__all__ = ["RouteCache", "RouteRequest"]

MAX_ROUTES: Final = 4096
"""Routes kept; past it the cache starts again (a flood of distinct routes costs checks, not memory)."""

R = TypeVar("R", bound=CheckedRoute)

RouteRequest = tuple[PinSource, PinBlockFormat, KeyRef, PinBlockFormat]
"""What a translation names: source key and format, destination key and format."""


class RouteCache:
    """Routes by (principal, the request's words); see the module docstring for when one is used."""

    def __init__(self, limit: int = MAX_ROUTES) -> None:
        self._limit = limit
        self._routes: dict[tuple[str, Hashable], CheckedRoute] = {}
        self._lock = threading.Lock()

    def route(self, s: Services, caller: Caller, words: Hashable | None,
              request: Callable[[], RouteRequest]) -> TranslateRoute:
        """The checked translation route for ``words`` (``None``: not to be kept, e.g. a one-time
        key); ``request()`` parses the request only when the route must be checked afresh."""
        def build() -> TranslateRoute:
            source, source_format, destination, destination_format = request()
            return route_translation(s, caller, source=source, source_format=source_format,
                                     destination=destination, destination_format=destination_format)

        return self._kept(s, caller, None if words is None else ("translate", words), build)

    def verification(self, s: Services, caller: Caller, words: Hashable,
                     build: Callable[[], VerifyRoute]) -> VerifyRoute:
        """The checked stored-PIN verification route for ``words``; ``build()`` checks it afresh."""
        return self._kept(s, caller, ("verify", words), build)

    def _kept(self, s: Services, caller: Caller, words: Hashable | None, build: Callable[[], R]) -> R:
        ident = (caller.principal.name, words)
        route = self._routes.get(ident) if words is not None else None
        # A route is kept under words that name its kind, so the one found is of the kind built.
        if route is not None and route_current(s, route):
            return route  # type: ignore[return-value]
        made = build()
        if words is not None:
            with self._lock:
                if len(self._routes) >= self._limit:
                    self._routes.clear()
                self._routes[ident] = made
        return made

    def __len__(self) -> int:
        return len(self._routes)
