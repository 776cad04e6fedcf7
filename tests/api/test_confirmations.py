"""The api's two ways of sharing a store round trip (issue 34): confirmations of matches in
flight read together (``api/confirmations.py``), and a stream's messages answered in a window
(``api/window.py``).

These drive the real Runner's executor and the real asyncio loop; what the read returns is
the test's, since what is under test is who waits for which read. The store's side, and
exactness across processes, are in test_card_counters.py and tests/service/test_pin_batch.py.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Mapping, Sequence

import pytest

from hsmsvc.api.confirmations import Confirmations
from hsmsvc.api.runner import Runner
from hsmsvc.api.window import in_window
from hsmsvc.errors import BackendUnavailable, InvalidInput


class Reads:
    """A counters read that records what it was asked and can be held."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail: Exception | None = None

    def __call__(self, subjects: list[str]) -> dict[str, int]:
        self.gate.wait(10)
        self.asked.append(subjects)
        if self.fail is not None:
            raise self.fail
        return {x: 1 for x in subjects if x.startswith("pan:")}


def test_matches_waiting_while_a_read_runs_are_read_together() -> None:
    async def go() -> tuple[list[dict[str, int]], list[list[str]]]:
        reads, runner = Reads(), Runner()
        c = Confirmations(runner, reads)
        reads.gate.clear()
        first = c.request(["principal:a", "pan:0"])
        await asyncio.sleep(0.05)  # the first read has started and is held
        rest = [c.request(["principal:a", f"pan:{i}"]) for i in range(1, 40)]
        reads.gate.set()
        got = await asyncio.gather(first, *rest)
        runner.close()
        return got, reads.asked

    got, asked = asyncio.run(go())
    assert len(asked) == 2, asked  # one read for the first, one for the 39 that waited behind it
    assert asked[1] == sorted({"principal:a", *(f"pan:{i}" for i in range(1, 40))})
    for i, counts in enumerate(got):
        assert counts[f"pan:{i}"] == 1  # each sees its own counters in the read that took it


def test_a_read_that_fails_fails_every_call_that_waited_on_it_and_the_next_read_is_fresh() -> None:
    async def go() -> tuple[list[dict[str, int] | BaseException], dict[str, int]]:
        reads, runner = Reads(), Runner()
        c = Confirmations(runner, reads)
        reads.fail = BackendUnavailable("store", "unavailable")
        got = list(await asyncio.gather(*(c.request([f"pan:{i}"]) for i in range(5)), return_exceptions=True))
        reads.fail = None
        after = await c.request(["pan:9"])
        runner.close()
        return got, after

    got, after = asyncio.run(go())
    assert all(isinstance(e, BackendUnavailable) for e in got), got
    assert after == {"pan:9": 1}


def test_a_caller_that_goes_away_does_not_stop_the_others() -> None:
    async def go() -> list[dict[str, int]]:
        reads, runner = Reads(), Runner()
        c = Confirmations(runner, reads)
        reads.gate.clear()
        gone = c.request(["pan:0"])
        stay = [c.request([f"pan:{i}"]) for i in range(1, 4)]
        gone.cancel()
        reads.gate.set()
        got = list(await asyncio.gather(*stay))
        runner.close()
        return got

    assert [sorted(x) for x in asyncio.run(go())] == [["pan:0", "pan:1", "pan:2", "pan:3"]] * 3


# -- a stream's window --------------------------------------------------------------------------


async def _messages(items: Sequence[object], sent: list[object] | None = None,
                    wait: asyncio.Queue[object] | None = None) -> AsyncIterator[object]:
    for q in items:
        if wait is not None and sent:
            await wait.get()  # a client that sends the next only once the last is answered
        if isinstance(q, Exception):
            raise q
        if sent is not None:
            sent.append(q)
        yield q


def _run_window(items: Sequence[object], delays: Mapping[object, float], window: int = 8,
                ping_pong: bool = False) -> list[object]:
    async def go() -> list[object]:
        async def later(q: object) -> object:
            await asyncio.sleep(delays[q])
            return f"ok:{q}"

        def start(q: object) -> object:
            if q == "bad":
                raise InvalidInput("pin_block", "bad")
            return later(q) if q in delays else f"ok:{q}"

        sent: list[object] = []
        answered: asyncio.Queue[object] = asyncio.Queue()
        out: list[object] = []
        gen = in_window(_messages(items, sent, answered if ping_pong else None), window, start=start,
                        answer=lambda q, v: v, failed=lambda q, e: f"error:{q}:{e}")
        try:
            async for a in gen:
                out.append(a)
                answered.put_nowait(a)
        except InvalidInput as e:
            out.append(f"ended:{e}")
        return out

    return asyncio.run(asyncio.wait_for(go(), 10))


def test_a_window_answers_in_the_order_sent_whatever_order_work_ends() -> None:
    items = list(range(20))
    delays: dict[object, float] = {i: 0.02 * (20 - i) / 20 for i in items if i % 3 == 0}  # the earlier, the slower
    assert _run_window(items, delays) == [f"ok:{i}" for i in items]


def test_an_item_error_is_its_own_answer_and_the_stream_goes_on() -> None:
    assert _run_window([1, "bad", 2], {1: 0.01}) == ["ok:1", "error:bad:pin_block: bad", "ok:2"]


def test_a_client_that_waits_for_each_answer_is_answered() -> None:
    assert _run_window(list(range(5)), {i: 0.001 for i in range(5)}, ping_pong=True) == [f"ok:{i}" for i in range(5)]


def test_a_message_that_cannot_be_read_ends_the_stream_after_the_ones_before_it() -> None:
    items: list[object] = [1, 2, InvalidInput("request", "cannot be decoded"), 3]
    assert _run_window(items, {1: 0.02}) == ["ok:1", "ok:2", "ended:request: cannot be decoded"]


@pytest.mark.parametrize("window", [1, 3])
def test_no_more_than_the_window_is_started_before_its_answers(window: int) -> None:
    async def go() -> int:
        started = answered = peak = 0

        def start(q: object) -> object:
            nonlocal started, peak
            started += 1
            peak = max(peak, started - answered)
            return asyncio.sleep(0.002, "ok")

        def answer(q: object, v: object) -> object:
            nonlocal answered
            answered += 1
            return v

        gen = in_window(_messages(list(range(12))), window, start=start, answer=answer, failed=lambda q, e: e)
        assert [a async for a in gen] == ["ok"] * 12
        return peak

    assert asyncio.run(go()) == window
