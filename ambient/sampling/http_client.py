"""A small blocking HTTP client for the OpenAI-compatible backend (standard library only).

Why ``http.client``: :meth:`Sampler.generate` is blocking and already runs in a
worker thread, so a blocking client fits without a second event loop, and the
standard library adds no dependency. What it adds over ``urllib``: separate
connect and read timeouts, retries with backoff on connection errors and 5xx,
server-sent events read line by line, and :class:`Cancel`, which closes every
open socket of a request the moment ``cancel`` is set (a blocked read returns
at once instead of waiting for the next byte).

The API key goes only into the ``Authorization`` header; it is never logged and
never part of an error message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from ambient.errors import ConfigError

_LOGGER = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({500, 502, 503, 504})


class HTTPStatusError(Exception):
    """The server answered ``status`` (after retries for 5xx); ``message`` is its own explanation."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class ServerUnreachable(Exception):
    """No connection could be made (after retries), or the connection broke before an answer."""


class ReadTimeout(Exception):
    """The server accepted the request but sent nothing for longer than the read timeout."""


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where the server is: ``http(s)://host:port`` plus an optional path prefix (``/v1`` is dropped)."""

    scheme: str
    host: str
    port: int
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        raw = url.strip()
        parts = urlsplit(raw if "://" in raw else f"http://{raw}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"model.base_url {url!r} is not a server address: use http://HOST:PORT "
                "(for example http://127.0.0.1:8080 for a llama.cpp server)"
            )
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ConfigError(f"model.base_url {url!r} has a bad port: use http://HOST:PORT") from None
        prefix = parts.path.rstrip("/").removesuffix("/v1")
        return cls(parts.scheme, parts.hostname, port, prefix)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.prefix}"


class Cancel:
    """Closes the sockets of one request when ``event`` is set, from a small watcher thread."""

    def __init__(self, event: threading.Event | None) -> None:
        self.event = event
        self._conns: set[http.client.HTTPConnection] = set()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def is_set(self) -> bool:
        return self.event is not None and self.event.is_set()

    def __enter__(self) -> Cancel:
        if self.event is not None:
            self._watcher = threading.Thread(target=self._watch, name="ambient-http-cancel", daemon=True)
            self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._watcher is not None:
            self._watcher.join()

    def _watch(self) -> None:
        assert self.event is not None
        while not self._done.is_set():
            if self.event.wait(0.05):
                self._close_all()
                return

    def _close_all(self) -> None:
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            _shutdown(conn)

    def track(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._conns.add(conn)
        if self.is_set:
            _shutdown(conn)

    def untrack(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._conns.discard(conn)


def _shutdown(conn: http.client.HTTPConnection) -> None:
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


@dataclasses.dataclass
class Client:
    """JSON over HTTP to one :class:`Endpoint`, with timeouts and retries."""

    endpoint: Endpoint
    api_key: str = dataclasses.field(default="", repr=False)
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    retries: int = 2  # extra attempts after the first, on connection errors and 5xx
    backoff: float = 0.25  # seconds before the first retry; doubles each time

    def get_json(self, path: str, cancel: Cancel | None = None) -> Any:
        with self._open("GET", path, None, cancel or Cancel(None)) as resp:
            return _read_json(resp)

    def post_json(self, path: str, body: dict[str, Any], cancel: Cancel | None = None) -> Any:
        with self._open("POST", path, body, cancel or Cancel(None)) as resp:
            return _read_json(resp)

    @contextlib.contextmanager
    def stream_events(self, path: str, body: dict[str, Any], cancel: Cancel) -> Iterator[Iterator[Any]]:
        """POST ``body`` and yield the JSON of each server-sent ``data:`` line until ``[DONE]``."""
        with self._open("POST", path, body, cancel) as resp:
            if "text/event-stream" not in (resp.getheader("Content-Type") or ""):
                yield iter([_read_json(resp)])  # a server that ignored stream=true answered in one piece
            else:
                yield _events(resp, self.read_timeout)

    @contextlib.contextmanager
    def _open(
        self, method: str, path: str, body: dict[str, Any] | None, cancel: Cancel
    ) -> Iterator[http.client.HTTPResponse]:
        """A response with status 2xx (errors raised), retried on connection errors and 5xx."""
        conn, resp = self._answer(method, path, body, cancel)
        try:
            yield resp
        finally:
            cancel.untrack(conn)
            conn.close()

    def _answer(
        self, method: str, path: str, body: dict[str, Any] | None, cancel: Cancel
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        delay = self.backoff
        for attempt in range(self.retries + 1):
            last = attempt == self.retries or cancel.is_set
            conn = self._connection()
            cancel.track(conn)
            try:
                resp = self._send(conn, method, path, body)
                if resp.status < 400:
                    return conn, resp
                if resp.status not in RETRY_STATUSES or last:
                    raise HTTPStatusError(resp.status, _error_message(resp))
                _LOGGER.info("%s %s answered %d; retrying in %.2f s", method, path, resp.status, delay)
            except (ConnectionError, socket.gaierror, http.client.RemoteDisconnected) as exc:
                self._drop(conn, cancel)
                if last:
                    raise ServerUnreachable(f"{type(exc).__name__}: {exc}") from exc
                _LOGGER.info("%s %s failed (%s); retrying in %.2f s", method, path, exc, delay)
            except TimeoutError as exc:
                connected = conn.sock is not None
                self._drop(conn, cancel)
                if connected:
                    raise ReadTimeout(f"no answer within {self.read_timeout} s") from exc
                if last:
                    raise ServerUnreachable(f"no connection within {self.connect_timeout} s") from exc
            except BaseException:
                self._drop(conn, cancel)
                raise
            self._drop(conn, cancel)
            time.sleep(delay)
            delay *= 2
        raise ServerUnreachable("no attempt was made")  # pragma: no cover - retries >= 0

    @staticmethod
    def _drop(conn: http.client.HTTPConnection, cancel: Cancel) -> None:
        cancel.untrack(conn)
        conn.close()

    def _connection(self) -> http.client.HTTPConnection:
        ep = self.endpoint
        cls = http.client.HTTPSConnection if ep.scheme == "https" else http.client.HTTPConnection
        return cls(ep.host, ep.port, timeout=self.connect_timeout)

    def _send(
        self, conn: http.client.HTTPConnection, method: str, path: str, body: dict[str, Any] | None
    ) -> http.client.HTTPResponse:
        headers = {"Accept": "application/json, text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(self.read_timeout)
        conn.request(method, self.endpoint.prefix + path, body=data, headers=headers)
        return conn.getresponse()


def _events(resp: http.client.HTTPResponse, read_timeout: float) -> Iterator[Any]:
    """The JSON payload of each ``data:`` line; stops at ``[DONE]`` or the end of the stream."""
    while True:
        try:
            line = resp.readline()
        except TimeoutError as exc:
            raise ReadTimeout(f"the stream stalled for more than {read_timeout} s") from exc
        except (ConnectionError, OSError, ValueError) as exc:
            raise ServerUnreachable(f"the stream broke ({type(exc).__name__}: {exc})") from exc
        if not line:
            return
        text = line.decode("utf-8", "replace").strip()
        if not text.startswith("data:"):
            continue  # blank separators, comments (": ping"), event names
        payload = text[5:].strip()
        if payload == "[DONE]":
            return
        try:
            yield json.loads(payload)
        except ValueError:
            _LOGGER.warning("ignoring a server-sent event that is not JSON: %.200s", payload)


def _read_json(resp: http.client.HTTPResponse) -> Any:
    raw = resp.read()
    try:
        return json.loads(raw)
    except ValueError:
        raise HTTPStatusError(resp.status, f"the answer is not JSON: {raw[:200]!r}") from None


def _error_message(resp: http.client.HTTPResponse) -> str:
    """The server's own words: OpenAI-style ``{"error": {"message"}}``, FastAPI ``{"detail"}``, or text."""
    raw = resp.read(64_000)
    try:
        data = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace").strip()[:300] or resp.reason
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err:
            return str(err)[:300]
    return str(data)[:300]
