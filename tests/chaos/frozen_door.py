"""A TCP proxy in front of a Kafka door that acts as a cluster owner paused by SIGSTOP
and woken after it lost the cell: the tests' stand-in for the chaos run's
``pause_owner`` fault, without a cluster.

* running: bytes pass both ways;
* ``freeze_at(api_key)``: like a process stopped just after it received a request of
  that kind (a Metadata request, say): from that request on nothing is answered: what
  clients send is held (the kernel would hold it in the socket), new connections wait
  unaccepted (the kernel would complete them into the backlog), the door's answers stay
  unread;
* ``wake_and_die()``: like the woken owner before it notices it lost the cell, the
  requests held are handed to the door and its answers relayed up to the answer of the
  request the freeze began with (a Metadata answer names the door's advertised address,
  this proxy, as node 1); at once every connection is closed and the port refuses: the
  agent is a standby now.

Requests and answers are passed on whole, frame by frame (a frame is a 4-byte length;
a request's header begins with its API key, version and correlation id, an answer's
with the correlation id); requests held are counted by API key.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

METADATA = 3  # the Metadata request's API key
RELAY_SECONDS = 10.0  # at most this long a woken proxy relays the door's answers
POLL_SECONDS = 0.05


class FrozenDoor:
    def __init__(self, door_port: int) -> None:
        self.door_port = door_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(POLL_SECONDS)
        self.port: int = self.server.getsockname()[1]
        self.frozen = threading.Event()
        self._freeze_at: int | None = None
        self._last_held: int | None = None  # correlation id of the request frozen at
        self._waking = threading.Event()
        self.dead = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._held: list[tuple[socket.socket, bytearray]] = []
        self.held_requests: dict[int, int] = {}  # API key -> requests held in the freeze
        self._threads = [threading.Thread(target=self._accept, name="frozen-door-accept", daemon=True)]
        self._threads[0].start()

    def freeze_at(self, api_key: int) -> None:
        """Freeze when the next request of ``api_key`` arrives (it is held)."""
        with self._lock:
            self._freeze_at = api_key

    def held(self, api_key: int) -> int:
        with self._lock:
            return self.held_requests.get(api_key, 0)

    def wake_and_die(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        for upstream, data in held:
            try:
                upstream.sendall(bytes(data))
            except OSError:
                pass
        self._waking.set()
        self.frozen.clear()
        self.dead.wait(RELAY_SECONDS)  # the answers are relayed until the one frozen at
        self.close()

    def close(self) -> None:
        self._die()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(10)

    def _die(self) -> None:
        self.dead.set()
        self.server.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self) -> None:
        while not self.dead.is_set():
            if self.frozen.is_set():
                time.sleep(POLL_SECONDS)
                continue
            try:
                client, _ = self.server.accept()
            except (TimeoutError, OSError):
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.door_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                if self.dead.is_set():
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
                for source, target, requests in ((client, upstream, True), (upstream, client, False)):
                    thread = threading.Thread(
                        target=self._pump,
                        args=(source, target, requests),
                        name="frozen-door-pump",
                        daemon=True,
                    )
                    self._threads.append(thread)
                    thread.start()

    def _pump(self, source: socket.socket, target: socket.socket, requests: bool) -> None:
        source.settimeout(POLL_SECONDS)
        pending = bytearray()  # request bytes not yet a whole frame
        while not self.dead.is_set():
            if self.frozen.is_set() and not requests:
                time.sleep(POLL_SECONDS)  # the stopped process reads no answers
                continue
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            pending += data
            try:
                if requests:
                    self._requests(target, pending)
                else:
                    self._answers(target, pending)
            except OSError:
                return

    def _answers(self, client: socket.socket, pending: bytearray) -> None:
        """Pass on each whole answer frame in ``pending``; once woken, die right after
        the answer to the request the freeze began with."""
        while len(pending) >= 8:
            (length,) = struct.unpack(">i", pending[:4])
            if len(pending) < 4 + length:
                return
            frame = bytes(pending[: 4 + length])
            del pending[: 4 + length]
            client.sendall(frame)
            (correlation,) = struct.unpack(">i", frame[4:8])
            if self._waking.is_set() and correlation == self._last_held:
                self._die()
                return

    def _requests(self, upstream: socket.socket, pending: bytearray) -> None:
        """Pass on (or hold, frozen) each whole request frame in ``pending``."""
        while len(pending) >= 12:
            (length,) = struct.unpack(">i", pending[:4])
            if len(pending) < 4 + length:
                return
            frame = bytes(pending[: 4 + length])
            del pending[: 4 + length]
            (api_key,) = struct.unpack(">h", frame[4:6])
            with self._lock:
                if api_key == self._freeze_at:
                    self._freeze_at = None
                    (self._last_held,) = struct.unpack(">i", frame[8:12])
                    self.frozen.set()
                if self.frozen.is_set():
                    self.held_requests[api_key] = self.held_requests.get(api_key, 0) + 1
                    self._held.append((upstream, bytearray(frame)))
                    continue
            upstream.sendall(frame)
