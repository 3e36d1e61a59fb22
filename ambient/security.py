"""Who may talk to the daemon: a secret token, loopback Host names and the UI's own Origin.

* A random token is made at first start and kept in ``AMBIENT_HOME/token``
  (mode 0600); a token file left empty by a crash is replaced. Every API
  request carries it in ``Authorization: Bearer TOKEN``; the WebSocket, which
  a browser cannot give headers, gets it as its first message
  (:mod:`ambient.sockets`). No cookie and no URL sent to a server carries it:
  a cookie of 127.0.0.1 goes to every port of that host, other servers
  included. The URL ``ambient run`` prints has it in the fragment
  (``#token=``), which browsers never send; the page keeps it in
  sessionStorage. The page and its static files hold no data and are public.
* The Host header must name the loopback address and this port, so a page on
  another site cannot reach the daemon by rebinding its DNS name to 127.0.0.1.
* An Origin header, when present, must be the UI's own, so another page in
  the browser cannot drive the daemon.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import secrets
from pathlib import Path

from aiohttp import web

from ambient.errors import AmbientError
from ambient.fsutil import write_atomic

_LOGGER = logging.getLogger(__name__)

TOKEN_FILE = "token"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_HOST_NAMES = ("127.0.0.1", "localhost", "[::1]")
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{32,128}")
# Earlier versions kept the token in this cookie (``ambient_token_PORT``); it is deleted on sight.
OLD_COOKIE_PREFIX = "ambient_token_"


class Refused(AmbientError):
    """A request that is not allowed (wrong Host, Origin or token)."""

    http_status = 403


class Unauthorized(AmbientError):
    http_status = 401


def load_or_create_token(home: Path) -> str:
    """The daemon's token: read from ``home/token``, or made (mode 0600) the first time.

    A file left empty (or blank) by a crash while it was being made is replaced by a new token.
    """
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
        raise _unwritable(path, exc) from None
    return token


def _unwritable(path: Path, exc: OSError) -> AmbientError:
    return AmbientError(
        f"cannot write the token file {path} ({exc.strerror}): free some disk space in AMBIENT_HOME"
    )


def _read_existing(path: Path) -> str:
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)  # someone loosened it: only the owner may read the token
    if _is_blank(path):
        return _replace_blank(path)
    token = read_token(path.parent)
    if token is None:
        raise AmbientError(
            f"{path} does not hold a valid token: delete it and start again (a new one is made)"
        )
    return token


def _is_blank(path: Path) -> bool:
    try:
        return not path.read_bytes().strip()
    except OSError:
        return False


def _replace_blank(path: Path) -> str:
    """A new token in place of an empty file (a crash between creating it and writing it)."""
    _LOGGER.warning("%s was empty (left by a crash?): a new token is made; open the new URL", path)
    try:
        write_atomic(path, secrets.token_urlsafe(32) + "\n", mode=0o600)
    except OSError as exc:
        raise _unwritable(path, exc) from None
    token = read_token(path.parent)  # what is there now: a start at the same moment may have written its own
    if token is None:
        raise AmbientError(f"{path} does not hold a valid token: delete it and start again")
    return token


def read_token(home: Path) -> str | None:
    """The token in ``home/token``, or None if there is none (the daemon never ran)."""
    try:
        token = (home / TOKEN_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return token if _TOKEN_RE.fullmatch(token) else None


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


def bearer_token(request: web.Request) -> str:
    """The token of the ``Authorization: Bearer`` header, or "" when there is none."""
    auth = request.headers.get("Authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else ""


def token_matches(expected: str, given: str) -> bool:
    """Whether ``given`` is the token, compared in constant time.

    Header bytes that are not UTF-8 arrive as surrogates, and JSON may hold lone ones: such text
    is never the (ASCII) token, and is compared without an error.
    """
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


WRONG_TOKEN = "wrong token: use the one in $AMBIENT_HOME/token (the URL `ambient run` printed)"


def check_token(expected: str, request: web.Request) -> None:
    """Refuse a request without ``Authorization: Bearer`` and the daemon's token."""
    given = bearer_token(request)
    if not given and "token" in request.query:
        raise Unauthorized(
            "a token in the URL is not taken (servers and logs see URLs): send "
            "'Authorization: Bearer TOKEN' (the token is in $AMBIENT_HOME/token)"
        )
    if not given:
        raise Unauthorized(
            "no token: open the URL that `ambient run` printed, or send 'Authorization: Bearer TOKEN' "
            "(the token is in $AMBIENT_HOME/token)"
        )
    if not token_matches(expected, given):
        raise Unauthorized(WRONG_TOKEN)
