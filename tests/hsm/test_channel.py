"""The pool's channel: a half-written message or a peer that stops reading costs a deadline, no more."""

from __future__ import annotations

import pickle
import socket
import struct
import time

import pytest

from hsmsvc.hsm.channel import Channel, ChannelClosed, ChannelTimeout


def test_half_written_message_times_out_then_completes() -> None:
    a, b = socket.socketpair()
    with a, b:
        ch = Channel(a.fileno(), bounded=True)
        payload = pickle.dumps({"id": 7, "reply": b"\x01" * 1000})
        frame = struct.pack("!Q", len(payload)) + payload
        b.sendall(frame[:100])  # a worker stopped half way through its reply
        start = time.monotonic()
        with pytest.raises(ChannelTimeout):
            ch.recv(time.monotonic() + 0.2)
        assert 0.2 <= time.monotonic() - start < 1.0
        b.sendall(frame[100:])  # continued: the rest joins what was kept
        assert ch.recv(time.monotonic() + 1.0) == {"id": 7, "reply": b"\x01" * 1000}


def test_send_to_a_peer_that_never_reads_times_out() -> None:
    a, b = socket.socketpair()
    with a, b:
        ch = Channel(a.fileno(), bounded=True)
        start = time.monotonic()
        with pytest.raises(ChannelTimeout):
            ch.send(b"\x00" * (16 << 20), time.monotonic() + 0.2)  # far more than the socket buffers
        assert time.monotonic() - start < 1.0


def test_closed_peer_is_reported() -> None:
    a, b = socket.socketpair()
    with a:
        ch = Channel(a.fileno(), bounded=True)
        b.close()
        with pytest.raises(ChannelClosed):
            ch.recv(time.monotonic() + 1.0)
        with pytest.raises(ChannelClosed):
            ch.send("x", time.monotonic() + 1.0)


def test_messages_back_to_back_are_read_one_at_a_time() -> None:
    a, b = socket.socketpair()
    with a, b:
        ours, theirs = Channel(a.fileno(), bounded=True), Channel(b.fileno(), bounded=False)
        for i in range(3):
            theirs.send((i, "ok", bytes(i)), None)
        assert [ours.recv(time.monotonic() + 1.0) for _ in range(3)] == [(i, "ok", bytes(i)) for i in range(3)]
