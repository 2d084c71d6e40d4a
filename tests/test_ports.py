"""The free loopback ports servers are started on come from below the kernel's ephemeral
range, where a client connection cannot take one between the probe and the bind."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from odradek import ports


def test_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    chosen = ports.free_ports(50)
    assert len(set(chosen)) == 50
    low = ports._ephemeral_low()
    assert all(ports._LOWEST <= port < low for port in chosen)
    for port in chosen[:5]:
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))


def test_a_taken_port_is_never_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    taken = holder.getsockname()[1]
    draws = iter([taken, taken, taken + 1 if taken + 1 < 65536 else taken - 1])
    monkeypatch.setattr(ports, "_ephemeral_low", lambda: 65536)
    monkeypatch.setattr(ports, "_LOWEST", 1024)
    monkeypatch.setattr(ports._random, "randrange", lambda low, high: next(draws))
    try:
        assert ports.free_port() != taken
    finally:
        holder.close()


def test_a_narrow_range_lets_the_kernel_choose(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    narrow = tmp_path / "range"
    narrow.write_text("10050\t60999\n")
    monkeypatch.setattr(ports, "_EPHEMERAL_RANGE", narrow)
    assert ports._ephemeral_low() == 10050
    chosen = ports.free_ports(3)
    assert len(set(chosen)) == 3 and all(port > 0 for port in chosen)


def test_an_unreadable_range_falls_back_to_the_iana_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ports, "_EPHEMERAL_RANGE", tmp_path / "missing")
    assert ports._ephemeral_low() == 32768


def test_running_out_of_draws_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    taken = holder.getsockname()[1]
    monkeypatch.setattr(ports, "_ephemeral_low", lambda: 65536)
    monkeypatch.setattr(ports._random, "randrange", lambda low, high: taken)
    try:
        with pytest.raises(RuntimeError, match="found only 0 of 1 free ports"):
            ports.free_port()
    finally:
        holder.close()


def test_a_port_range_is_consecutive_free_and_skips_a_taken_port(monkeypatch: pytest.MonkeyPatch) -> None:
    start = ports.free_port_range(3)
    assert ports._LOWEST <= start and start + 2 < ports._ephemeral_low()
    for port in range(start, start + 3):
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))
    # A draw whose middle port is taken is passed over for the next.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    taken = holder.getsockname()[1]
    draws = iter([taken - 1, taken + 1])
    monkeypatch.setattr(ports, "_ephemeral_low", lambda: 65536)
    monkeypatch.setattr(ports, "_LOWEST", 1024)
    monkeypatch.setattr(ports._random, "randrange", lambda low, high: next(draws))
    try:
        assert ports.free_port_range(3) == taken + 1
    finally:
        holder.close()
