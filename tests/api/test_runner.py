"""The runner's rules (api/runner.py, loopguard.py): inline until I/O, bounded executors."""

from __future__ import annotations

import asyncio
import threading

import pytest

from hsmsvc.api.logs import REQUEST_ID
from hsmsvc.api.runner import InlineState, Lane, Runner
from hsmsvc.errors import Overloaded
from hsmsvc.loopguard import WouldBlock, may_block, run_inline


def _reads_store() -> str:
    may_block()
    return "read"


def test_may_block_raises_only_inline() -> None:
    assert _reads_store() == "read"
    with pytest.raises(WouldBlock):
        run_inline(_reads_store)
    assert _reads_store() == "read"  # the mark is gone after the inline run


def test_a_method_that_keeps_blocking_is_tried_inline_less_often() -> None:
    runner, state = Runner(threads=1, queue=0), InlineState()
    tried = 0
    for _ in range(200):
        if runner.first_inline(state):
            tried += 1
            with pytest.raises(WouldBlock):
                runner.call(state, _reads_store)
    # 1 + 2 + 4 + ... then one in 64: a blocking method costs few wasted inline runs.
    assert 6 <= tried <= 10
    assert runner.first_inline(InlineState())
    state.skip = 0
    assert runner.call(state, lambda: "ok") == "ok" and state.blocked == 0
    assert not Runner(threads=1, queue=0, inline=False).first_inline(InlineState())
    runner.close()


def test_each_lane_is_bounded_and_counts_a_thread_until_it_is_done() -> None:
    async def main() -> None:
        runner = Runner(threads=1, queue=1)
        release = threading.Event()
        held = [asyncio.create_task(runner.offload(Lane.OTHER, release.wait, 10)) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded):
            await runner.offload(Lane.OTHER, lambda: None)
        # The transaction lane is not taken by the other lane's stalled calls.
        REQUEST_ID.set("rid-1")
        assert await runner.offload(Lane.TRANSACTION, REQUEST_ID.get) == "rid-1"
        held[0].cancel()  # the caller gives up; its thread is still busy
        await asyncio.sleep(0.05)
        assert runner.busy(Lane.OTHER) == 2
        release.set()
        await asyncio.gather(held[1])
        for _ in range(100):
            if runner.busy(Lane.OTHER) == 0:
                break
            await asyncio.sleep(0.01)
        assert runner.busy(Lane.OTHER) == 0
        runner.close()

    asyncio.run(main())
