"""Free loopback ports for the servers that tests, `odradek bench` and chaos runs start.

Asking the kernel for port 0 and closing the probe is racy in a way that shows on a busy
machine: the kernel hands out such ports from its ephemeral range, the same range it takes
the source ports of outgoing connections from, so between the probe closing and the server
binding the port, any client connection on the machine may take it ("Address already in
use"). These ports are drawn at random from *below* the ephemeral range, where only
listeners live, and each is checked by binding it.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

# Linux publishes its ephemeral range here; elsewhere the IANA range's start stands in.
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_EPHEMERAL_LOW_DEFAULT = 32768
# Below this sit well-known services and what administrators usually configure.
_LOWEST = 10000
# Draws before giving up: a machine with 20,000 candidate ports all taken is broken.
_DRAWS_MAX = 2000

_random = random.SystemRandom()  # independent of any seed a test gives the random module


def _ephemeral_low() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _EPHEMERAL_LOW_DEFAULT


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports nothing is bound to on ``host`` right now, outside the
    kernel's ephemeral range (all are held until all are found)."""
    low = _ephemeral_low()
    if low - _LOWEST < 100 * count:  # an unusual ephemeral range: let the kernel choose
        return _kernel_ports(count, host)
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(_DRAWS_MAX):
            if len(ports) == count:
                return ports
            port = _random.randrange(_LOWEST, low)
            if port in ports:
                continue
            probe = socket.socket()
            try:
                probe.bind((host, port))  # no SO_REUSEADDR: a port in TIME_WAIT is refused too
            except OSError:
                probe.close()
                continue
            held.append(probe)
            ports.append(port)
        if len(ports) == count:
            return ports
        raise RuntimeError(f"found only {len(ports)} of {count} free ports on {host} in {_DRAWS_MAX} draws")
    finally:
        for probe in held:
            probe.close()


def free_port(host: str = "127.0.0.1") -> int:
    """One TCP port nothing is bound to on ``host`` right now (see :func:`free_ports`)."""
    return free_ports(1, host)[0]


def free_port_range(count: int, host: str = "127.0.0.1") -> int:
    """The first of ``count`` consecutive TCP ports nothing is bound to on ``host`` right
    now, below the ephemeral range (a cluster agent's cells' Kafka doors listen on a base
    port plus the cell's index)."""
    low = _ephemeral_low()
    for _ in range(_DRAWS_MAX):
        start = _random.randrange(_LOWEST, max(low - count, _LOWEST + 1))
        held: list[socket.socket] = []
        try:
            for port in range(start, start + count):
                probe = socket.socket()
                held.append(probe)
                probe.bind((host, port))
            return start
        except OSError:
            continue
        finally:
            for probe in held:
                probe.close()
    raise RuntimeError(f"found no {count} consecutive free ports on {host} in {_DRAWS_MAX} draws")


def _kernel_ports(count: int, host: str) -> list[int]:
    held = []
    try:
        for _ in range(count):
            probe = socket.socket()
            held.append(probe)
            probe.bind((host, 0))
        return [int(probe.getsockname()[1]) for probe in held]
    finally:
        for probe in held:
            probe.close()
