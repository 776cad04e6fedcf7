"""Checked TranslatePin routes, kept between calls: the first of the hot path's two caches.

A route (:class:`hsmsvc.service.pin.TranslateRoute`) is the outcome of every
check a translation needs before its block is touched: the caller's access to
both keys, their usage, state and dates, and the backend's prepared translator
between them. It is kept under the caller's name and the request's own words
(key ids or aliases, versions and formats, as sent), so a route is only found
again for the same principal saying the same thing, and is used only while
:func:`hsmsvc.service.pin.route_current` holds:

* the key cache (:class:`hsmsvc.keys.cache.KeyCache`) has dropped or changed
  nothing since the route was checked: a revocation, a new version, a state or
  use-count change, in this process or (within its refresh) another;
* no date the checks relied on (expiry, activation, rotation by age) has passed.

The second cache is the backend's, of keys it has loaded (unwrapped) from their
cryptograms; the prepared translator checks its keys against it on each call,
so a key the backend dropped (``Backend.forget``) is loaded and verified again.
``docs/architecture.md`` ("When a revoked key stops working") says the same.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Final

from hsmsvc.keys.model import KeyRef
from hsmsvc.service.context import Caller, Services
from hsmsvc.service.pin import PinSource, TranslateRoute, route_current, route_translation
from hsmsvc.types import PinBlockFormat

__all__ = ["RouteCache", "RouteRequest"]

MAX_ROUTES: Final = 4096
"""Routes kept; past it the cache starts again (a flood of distinct routes costs checks, not memory)."""

RouteRequest = tuple[PinSource, PinBlockFormat, KeyRef, PinBlockFormat]
"""What a translation names: source key and format, destination key and format."""


class RouteCache:
    """Routes by (principal, the request's words); see the module docstring for when one is used."""

    def __init__(self, limit: int = MAX_ROUTES) -> None:
        self._limit = limit
        self._routes: dict[tuple[str, Hashable], TranslateRoute] = {}
        self._lock = threading.Lock()

    def route(self, s: Services, caller: Caller, words: Hashable | None,
              request: Callable[[], RouteRequest]) -> TranslateRoute:
        """The checked route for ``words`` (``None``: not to be kept, e.g. a one-time key);
        ``request()`` parses the request only when the route must be checked afresh."""
        ident = (caller.principal.name, words)
        route = self._routes.get(ident) if words is not None else None
        if route is not None and route_current(s, route):
            return route
        source, source_format, destination, destination_format = request()
        route = route_translation(s, caller, source=source, source_format=source_format, destination=destination,
                                  destination_format=destination_format)
        if words is not None:
            with self._lock:
                if len(self._routes) >= self._limit:
                    self._routes.clear()
                self._routes[ident] = route
        return route

    def __len__(self) -> int:
        return len(self._routes)
