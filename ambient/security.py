"""Who may talk to the daemon: a secret token, loopback Host names and the UI's own Origin.

* A random token is made at first start and kept in ``AMBIENT_HOME/token``
  (mode 0600). Every request carries it: ``Authorization: Bearer TOKEN``, the
  ``token`` query parameter (the URL ``ambient run`` prints, and WebSockets),
  or the HttpOnly, SameSite=Strict cookie the page gets on its first load.
* The Host header must name the loopback address and this port, so a page on
  another site cannot reach the daemon by rebinding its DNS name to 127.0.0.1.
* An Origin header, when present, must be the UI's own, so another page in
  the browser cannot drive the daemon.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
from pathlib import Path

from aiohttp import web

from ambient.errors import AmbientError

TOKEN_FILE = "token"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_HOST_NAMES = ("127.0.0.1", "localhost", "[::1]")
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{32,128}")


class Refused(AmbientError):
    """A request that is not allowed (wrong Host, Origin or token)."""

    http_status = 403


class Unauthorized(AmbientError):
    http_status = 401


def load_or_create_token(home: Path) -> str:
    """The daemon's token: read from ``home/token``, or made (mode 0600) the first time."""
    path = home / TOKEN_FILE
    try:
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_existing(path)
    except OSError as exc:
        raise AmbientError(
            f"cannot create the token file {path} ({exc.strerror}): make AMBIENT_HOME writable "
            "(or point AMBIENT_HOME at a writable folder)"
        ) from None
    token = secrets.token_urlsafe(32)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(token + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise AmbientError(
            f"cannot write the token file {path} ({exc.strerror}): free some disk space in AMBIENT_HOME"
        ) from None
    return token


def _read_existing(path: Path) -> str:
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)  # someone loosened it: only the owner may read the token
    token = read_token(path.parent)
    if token is None:
        raise AmbientError(
            f"{path} does not hold a valid token: delete it and start again (a new one is made)"
        )
    return token


def read_token(home: Path) -> str | None:
    """The token in ``home/token``, or None if there is none (the daemon never ran)."""
    try:
        token = (home / TOKEN_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return token if _TOKEN_RE.fullmatch(token) else None


def cookie_name(port: int) -> str:
    """Cookies are per host, not per port: name the cookie after the port."""
    return f"ambient_token_{port}"


def local_port(request: web.Request) -> int | None:
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        return int(sockname[1])
    return None


def check_host(request: web.Request, port: int | None) -> None:
    """Refuse a Host header that is not ``127.0.0.1:PORT``, ``localhost:PORT`` or ``[::1]:PORT``."""
    host = request.headers.get("Host", "").strip().lower()
    allowed = {f"{name}:{port}" for name in _HOST_NAMES}
    if port == 80:
        allowed.update(_HOST_NAMES)
    if port is None or host not in allowed:
        raise Refused(
            f"Host {host or '(none)'!r} is not this daemon: open it as http://127.0.0.1:{port}/ "
            "(other host names are refused to stop DNS rebinding)"
        )


def check_origin(request: web.Request) -> None:
    """Refuse a request sent from a page that is not the daemon's own UI."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    if origin.lower() != f"http://{request.headers.get('Host', '').lower()}":
        raise Refused(f"Origin {origin!r} may not use this daemon: only its own web UI may")


def supplied_token(request: web.Request, port: int | None) -> tuple[str, str]:
    """The token the request carries, and where it came from ("header", "query", "cookie" or "")."""
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip(), "header"
    if "token" in request.query:
        return request.query["token"], "query"
    if port is not None and cookie_name(port) in request.cookies:
        return request.cookies[cookie_name(port)], "cookie"
    return "", ""


def check_token(expected: str, given: str) -> None:
    if not given:
        raise Unauthorized(
            "no token: open the URL that `ambient run` printed, or send 'Authorization: Bearer TOKEN' "
            "(the token is in $AMBIENT_HOME/token)"
        )
    # Header bytes that are not UTF-8 arrive as surrogates: compare them as the bytes they were.
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode()):
        raise Unauthorized("wrong token: use the one in $AMBIENT_HOME/token (the URL `ambient run` printed)")
