"""A TCP proxy in front of the broker that can lose Produce responses, to force client retries.

The broker is started with `--advertised-listener` set to the proxy's port, so every
client connection (bootstrap and the broker connections that metadata points to) goes
through the proxy. The proxy reads whole Kafka frames in both directions, remembers which
correlation ids belong to Produce requests, and, while `drop_produce_responses` is above
zero, answers a Produce response by closing both sides instead of forwarding it. The
broker has written the batch; the client never hears so, and sends it again.

Only 127.0.0.1 is used. Threads are daemons and every socket is closed by `close()`.
"""

from __future__ import annotations

import socket
import struct
import threading

API_PRODUCE = 0


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _recv_frame(sock: socket.socket) -> bytes | None:
    head = _recv_exact(sock, 4)
    if head is None:
        return None
    (length,) = struct.unpack(">i", head)
    body = _recv_exact(sock, length) if length > 0 else b""
    return None if body is None else head + body


class FaultProxy:
    def __init__(self, upstream_port: int, listen_port: int):
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", listen_port))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.drop_produce_responses = 0
        self.dropped = 0
        self.produce_requests = 0
        self.sockets: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, server]
            produce_ids: set[int] = set()
            threading.Thread(target=self._requests, args=(client, server, produce_ids),
                             daemon=True).start()
            threading.Thread(target=self._responses, args=(server, client, produce_ids),
                             daemon=True).start()

    @staticmethod
    def _shut(*socks: socket.socket) -> None:
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _requests(self, client, server, produce_ids: set[int]) -> None:
        while (frame := _recv_frame(client)) is not None:
            if len(frame) >= 12:
                api_key, _version, correlation_id = struct.unpack(">hhi", frame[4:12])
                if api_key == API_PRODUCE:
                    with self.lock:
                        self.produce_requests += 1
                    produce_ids.add(correlation_id)
            try:
                server.sendall(frame)
            except OSError:
                break
        self._shut(client, server)

    def _responses(self, server, client, produce_ids: set[int]) -> None:
        while (frame := _recv_frame(server)) is not None:
            if len(frame) >= 8:
                (correlation_id,) = struct.unpack(">i", frame[4:8])
                if correlation_id in produce_ids:
                    with self.lock:
                        drop = self.drop_produce_responses > 0
                        if drop:
                            self.drop_produce_responses -= 1
                            self.dropped += 1
                    if drop:
                        break
            try:
                client.sendall(frame)
            except OSError:
                break
        self._shut(client, server)

    def close(self) -> None:
        self.closed = True
        self._shut(self.listener)
        with self.lock:
            socks, self.sockets = self.sockets, []
        self._shut(*socks)
