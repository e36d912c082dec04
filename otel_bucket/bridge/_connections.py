"""An HTTP/1.1 server on one asyncio event loop, handing CPU work to a few threads.

A thread per connection lets a handful of slow clients hold every thread (16 connections sending
a byte every few seconds locked the bridge out, ``/health`` included). Here every connection is
a coroutine on one event-loop thread: a slow or idle client costs a file descriptor and a little
memory, never a thread, and the threads (``threads``) only decode bodies that arrived whole.

- A request's head must arrive within 10 s of its first byte, and head and body together within
  ``request_timeout`` (30 s): a deadline for the whole request, not a timeout per read, so a
  client sending a byte now and then cannot hold its connection. Past it: 408 and close.
- A keep-alive connection idle for ``idle_timeout`` is closed; an answer the client does not read
  within 10 s closes the connection.
- Beyond ``max_connections`` a new connection sheds the one that has waited longest among those
  idle or still sending their request head; when every connection is in the middle of a request
  the new one is closed instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import logging
import socket
import threading
from collections.abc import Callable
from typing import Final, TypeVar

from otel_bucket.bridge._body import Buffers, discard_body, read_body
from otel_bucket.bridge._http import (
    HEAD_LIMIT,
    BadHead,
    Request,
    Response,
    encode_response,
    parse_head,
)

__all__ = ["HTTPServer", "Incoming", "RequestTimeout"]

_log = logging.getLogger("otel_bucket.bridge")

_T = TypeVar("_T")

_HEAD_TIMEOUT: Final = 10.0  # seconds from a request's first byte to the end of its head
_WRITE_TIMEOUT: Final = 10.0
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


class RequestTimeout(Exception):
    """The request's body did not arrive before its deadline: answered 408, then closed."""


class _State(enum.Enum):
    IDLE = "idle"  # between requests: may be shed
    HEAD = "head"  # sending a request head: may be shed
    BODY = "body"  # sending a request body: kept, but closed when the server stops
    BUSY = "busy"  # a request read whole, being served: kept, and answered when the server stops


class _Connection:
    def __init__(self, transport: asyncio.WriteTransport, now: float) -> None:
        self.transport = transport
        self.state = _State.IDLE
        self.since = now


class Incoming:
    """One request as its handler sees it: the head, the client, and the body to read once
    (or to discard) within the request's deadline."""

    def __init__(
        self,
        request: Request,
        client: str,
        conn: _Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        deadline: float,
    ) -> None:
        self.request = request
        self.client = client
        self._conn = conn
        self._reader = reader
        self._writer = writer
        self._deadline = deadline
        self.body_done = False

    def _time_left(self) -> float:
        return self._deadline - asyncio.get_running_loop().time()

    def _expects_continue(self) -> bool:
        return self.request.headers.get("expect", "").lower() == "100-continue"

    async def read_body(self, limit: int, buffers: Buffers) -> bytes:
        """The body as sent, at most ``limit`` bytes (see `read_body`).

        Raises:
            RequestTimeout: it did not arrive before the request's deadline.
        """
        self.body_done = True
        if self._expects_continue():
            self._writer.write(_CONTINUE)
        self._conn.state = _State.BODY
        try:
            return await asyncio.wait_for(
                read_body(self._reader, self.request.headers, limit, buffers), self._time_left()
            )
        except asyncio.TimeoutError:
            raise RequestTimeout from None
        finally:
            self._conn.state = _State.BUSY

    async def discard_body(self, limit: int) -> bool:
        """Read and drop the body; False when the connection must close instead."""
        self.body_done = True
        if self._expects_continue():
            return False  # the client waits for a 100 before it sends the body: never send it
        self._conn.state = _State.BODY
        try:
            return await asyncio.wait_for(
                discard_body(self._reader, self.request.headers, limit), self._time_left()
            )
        except asyncio.TimeoutError:
            return False
        finally:
            self._conn.state = _State.BUSY


class HTTPServer:
    """Serves ``handle`` (to be defined by a subclass) on ``host``:``port``.

    Args:
        host, port: where to listen; port 0 picks a free one.
        threads: threads for `in_thread` work.
        max_connections: open connections at most (see the module's docstring).
        idle_timeout: seconds an idle keep-alive connection is kept.
        request_timeout: seconds from a request's first byte to the end of its body.
    """

    server_name = "otel-bucket-bridge"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        threads: int,
        max_connections: int = 1024,
        idle_timeout: float = 60.0,
        request_timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.closing = False
        self._max_connections = min(max_connections, _file_room())
        self._idle_timeout = idle_timeout
        self._request_timeout = request_timeout
        self._open: set[_Connection] = set()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            threads, thread_name_prefix="otel-bucket-bridge-decode"
        )
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="otel-bucket-bridge")
        self._thread.daemon = True
        self._all_done = asyncio.Event()

    async def handle(self, incoming: Incoming) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def url(self) -> str:
        host, port = self.host, self.port
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def start(self) -> None:
        """Listen (raising OSError when the address cannot be bound), then serve on a thread."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.host, self.port))
                sock.listen(128)  # a burst of new connections must not wait for a SYN retry
                sock.setblocking(False)
                self._server = self._loop.run_until_complete(
                    asyncio.start_server(self._serve, sock=sock, limit=HEAD_LIMIT)
                )
            except BaseException:
                sock.close()
                raise
        except BaseException:
            self._loop.close()
            raise
        self.port = int(sock.getsockname()[1])
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop listening, close idle connections, let requests already read be answered (up to
        ``timeout`` s), then close every connection and end the loop's thread."""
        self.closing = True
        if self._server is None or self._loop.is_closed():
            self._pool.shutdown(wait=False)
            return
        done = asyncio.run_coroutine_threadsafe(self._shut(timeout), self._loop)
        with contextlib.suppress(Exception):
            done.result(timeout + 5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout + 5)
        if not self._thread.is_alive():
            self._loop.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def in_thread(self, work: Callable[[], _T]) -> _T:
        """Run ``work`` on one of the server's threads."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    async def _shut(self, timeout: float) -> None:
        assert self._server is not None
        self._server.close()
        for conn in list(self._open):
            if conn.state is not _State.BUSY:  # requests not read whole are not answered
                conn.transport.abort()
        if self._open:
            self._all_done.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._all_done.wait(), timeout)
        for conn in list(self._open):
            conn.transport.abort()
        for _ in range(3):  # let the aborted connections' coroutines end
            await asyncio.sleep(0)

    def _admit(self, conn: _Connection) -> bool:
        if self.closing:
            return False
        if len(self._open) >= self._max_connections:
            sheddable = [c for c in self._open if c.state in (_State.IDLE, _State.HEAD)]
            if not sheddable:
                return False
            oldest = min(sheddable, key=lambda c: c.since)
            _log.debug(
                "bridge: %d connections open: closing one %s for %.0f s",
                len(self._open),
                oldest.state.value,
                conn.since - oldest.since,
            )
            oldest.transport.abort()
            self._open.discard(oldest)
        self._open.add(conn)
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        conn = _Connection(writer.transport, loop.time())
        if not self._admit(conn):
            writer.transport.abort()
            return
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) else "-"
        try:
            await self._requests(conn, client, reader, writer)
            # Done: send what is written (the last answer) before closing, within a deadline.
            conn.state = _State.IDLE
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), _WRITE_TIMEOUT)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass  # the client went away, or was too slow: nothing to answer
        except Exception:
            _log.debug("bridge: error while serving %s", client, exc_info=True)
        finally:
            self._open.discard(conn)
            writer.transport.abort()  # at once, unless closed above
            if not self._open:
                self._all_done.set()

    async def _requests(
        self,
        conn: _Connection,
        client: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        loop = asyncio.get_running_loop()
        while not self.closing:
            conn.state, conn.since = _State.IDLE, loop.time()
            first = await asyncio.wait_for(reader.read(1), self._idle_timeout)
            if not first:
                return
            conn.state, conn.since = _State.HEAD, loop.time()
            deadline = conn.since + self._request_timeout
            wait = min(_HEAD_TIMEOUT, self._request_timeout)
            try:
                head = first + await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait)
                request = parse_head(head)
            except asyncio.TimeoutError:
                await self._write(writer, _plain(408, "the request head took too long"))
                return
            except asyncio.LimitOverrunError:
                await self._write(writer, _plain(431, "request head too large"))
                return
            except BadHead as exc:
                await self._write(writer, _plain(exc.status, str(exc)))
                return
            conn.state = _State.BUSY
            incoming = Incoming(request, client, conn, reader, writer, deadline)
            try:
                response = await self.handle(incoming)
            except RequestTimeout:
                await self._write(writer, _plain(408, "the request took too long"))
                return
            if not incoming.body_done and not await incoming.discard_body(0):
                response = response.closing()
            if self.closing or not request.keep_alive:
                response = response.closing()
            await self._write(writer, response)
            if response.close:
                return

    async def _write(self, writer: asyncio.StreamWriter, response: Response) -> None:
        writer.write(encode_response(response, self.server_name))
        await asyncio.wait_for(writer.drain(), _WRITE_TIMEOUT)


def _plain(status: int, message: str) -> Response:
    return Response(status, "text/plain; charset=utf-8", message.encode(), close=True)


def _file_room() -> int:
    """Connections that fit in this process's limit on open files, beside 64 other files."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return 1 << 30
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 1 << 30 if soft == resource.RLIM_INFINITY else max(soft - 64, 16)
