"""A TCP relay for fault tests: put it between maild and a server, then cut the line.

Stopping a server does not always end the sessions already open (Dovecot's `imap`
processes serve on after the master stops), so a test that only stops the server may never
show maild an outage. The relay can: `down()` drops every live connection at once and
refuses new ones until `up()`, on the same port; `cut()` drops the live ones and goes on
accepting. `accepted` counts the connections made through it, so a test can see that maild
came back.

    with Relay(server.host, server.port) as relay:
        ...  # point maild at relay.host:relay.port
        relay.down(); ...; relay.up()
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Self

from tests.servers.dovecot import HOST, free_port

CHUNK = 65536


class Relay:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.host = HOST
        self.port = free_port()
        self.target = (target_host, target_port)
        self.accepted = 0
        self.cuts = 0
        self._lock = threading.Lock()
        self._live: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def up(self) -> None:
        """Accept connections (again) on the same port."""
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,),
                                         name=f"relay-{self.port}", daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Refuse new connections and drop the live ones."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.cut()

    def cut(self) -> int:
        """Drop every live connection (both ends, at once); how many there were."""
        with self._lock:
            live, self._live = list(self._live), set()
            self.cuts += 1
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        return len(live) // 2

    @property
    def live(self) -> int:
        with self._lock:
            return len(self._live) // 2

    def __enter__(self) -> Self:
        self.up()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.down()

    # -- the relay's threads -------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # down()
            try:
                server = socket.create_connection(self.target, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # went down meanwhile
                    client.close()
                    server.close()
                    return
                self._live.update((client, server))
                self.accepted += 1
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(CHUNK):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            # One side ended: end the other, as a real connection's end would.
            with self._lock:
                self._live.discard(source)
                self._live.discard(sink)
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                source.close()
