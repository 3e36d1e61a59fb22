"""Client keys: one secret per app that talks to the daemon (a Loom, an editor plugin, an MCP client).

Each key is a place of its own. Its trees have the source ``key:NAME`` and stand in the key's
scope (:mod:`ambient.scopes`): by default ``key:NAME``, a wall of its own (the app sees only its
own trees and no other place sees them); a bare name such as ``loom`` puts them behind the
person's private wall instead, beside the notes and the UI. ``retrieve`` says whether memory is
retrieved into its prompts (off by default: the app owns its prompt).

The secrets are kept only as SHA-256 hashes in ``AMBIENT_HOME/keys.json`` (mode 0600); a secret
is shown once, when the key is added. The UI's own token (:mod:`ambient.security`) is never a
client key and never handed to other apps.

The API every surface that authenticates apps uses (the daemon's ``/v1``, an MCP server)::

    keys = KeyStore(config.home)
    key, secret = keys.add("loom")            # print the secret once
    keys.list()                                 # [Key(name="loom", scope="key:loom", ...)]
    keys.verify(secret)                         # Key, or None for anything else
    keys.remove("loom")                         # its trees stay (`ambient forget --place key:loom`)

Blocking (it reads and writes a file): call it from a worker thread in the daemon.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ambient.errors import AmbientError, InvalidInput, NotFound
from ambient.fsutil import locked, write_atomic
from ambient.home import private_dir

KEYS_FILE = "keys.json"
LOCK_FILE = "keys.lock"
FORMAT = 1
SECRET_PREFIX = "amb_"
HINT_CHARS = 8  # the secret's first characters kept in clear, to tell keys apart (far too few to use)
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SCOPE_RE = re.compile(r"key:[A-Za-z0-9][A-Za-z0-9_.-]{0,63}|[a-z][a-z0-9_-]{0,31}")
MAX_SECRET_CHARS = 256

Rows = list[dict[str, Any]]  # the file's entries (a name outside the class: KeyStore has a list())


@dataclasses.dataclass(frozen=True)
class Key:
    """One client app's key, as kept (the secret itself is never kept)."""

    name: str
    scope: str  # the scope its trees stand in, and so what its prompts may retrieve
    retrieve: bool = False  # memory retrieved into its prompts (the app's prompt is its own otherwise)
    created_at: float = 0.0
    hint: str = ""  # the secret's first characters

    @property
    def tree_source(self) -> str:
        """The ``source`` of the trees its requests make (``ambient forget --place`` takes it)."""
        return f"key:{self.name}"

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "source": self.tree_source}


def default_scope(name: str) -> str:
    return f"key:{name}"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"a key's name must be 1-64 letters, digits, '_', '.' or '-' (starting with a letter or "
            f"digit), got {name!r}: name it after the app, e.g. loom"
        )
    return name


def check_scope(scope: str) -> str:
    if not SCOPE_RE.fullmatch(scope):
        raise InvalidInput(
            f"a key's scope must be key:NAME (a wall of its own) or a bare lower-case name such as "
            f"loom (behind the private wall, beside your notes), got {scope!r}"
        )
    return scope


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


class KeyStore:
    """The client keys of one home (``AMBIENT_HOME/keys.json``). Thread-safe; blocking."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.path = self.home / KEYS_FILE
        self._lock = threading.Lock()
        self._cache: tuple[tuple[int, int, int], Rows] | None = None

    # ------------------------------------------------------------------ the API
    def add(self, name: str, *, scope: str | None = None, retrieve: bool = False) -> tuple[Key, str]:
        """A new key ``name``; returns it and its secret (shown once: only its hash is kept)."""
        check_name(name)
        scope = check_scope(scope or default_scope(name))
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        with self._writing() as rows:
            if any(r["name"] == name for r in rows):
                raise InvalidInput(
                    f"a key named {name!r} exists: remove it first (`ambient keys remove {name}`) "
                    "or choose another name"
                )
            row = {
                "name": name,
                "sha256": _digest(secret),
                "scope": scope,
                "retrieve": bool(retrieve),
                "created_at": round(time.time(), 3),
                "hint": secret[:HINT_CHARS],
            }
            rows.append(row)
        return _key(row), secret

    def list(self) -> list[Key]:
        """Every key, oldest first."""
        return [_key(r) for r in self._rows()]

    def get(self, name: str) -> Key:
        for row in self._rows():
            if row["name"] == name:
                return _key(row)
        raise self._unknown(name)

    def remove(self, name: str) -> Key:
        """Remove key ``name``: its secret is refused from now on; its trees stay."""
        with self._writing() as rows:
            found = [r for r in rows if r["name"] == name]
            if not found:
                raise self._unknown(name)
            rows.remove(found[0])
        return _key(found[0])

    def verify(self, secret: str) -> Key | None:
        """The key whose secret this is, or None (compared in constant time, by hash)."""
        if not isinstance(secret, str) or not secret or len(secret) > MAX_SECRET_CHARS:
            return None
        digest = _digest(secret)
        match = None
        for row in self._rows():
            if hmac.compare_digest(row["sha256"], digest):
                match = row
        return _key(match) if match is not None else None

    # ------------------------------------------------------------------ the file
    def _unknown(self, name: str) -> NotFound:
        names = ", ".join(k.name for k in self.list()) or "none yet"
        return NotFound(f"no key named {name!r} (keys: {names}): list them with `ambient keys list`")

    def _rows(self) -> Rows:
        """The keys in the file, re-read only when the file changed (another process may add one)."""
        with self._lock:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                return []
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if self._cache is None or self._cache[0] != stamp:
                self._cache = (stamp, self._read())
            return [*self._cache[1]]

    def _read(self) -> Rows:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            rows = data["keys"]
            for row in rows:
                for field, kind in (("name", str), ("sha256", str), ("scope", str)):
                    if not isinstance(row.get(field), kind):
                        raise ValueError(f"a key without {field}")
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AmbientError(
                f"{self.path} cannot be read ({exc}): move it away and add the keys again "
                "(`ambient keys add NAME`)"
            ) from None
        return [{**r} for r in rows]

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Rows]:
        """The keys, read under the lock file; written back (0600, atomically) if the block ends cleanly."""
        with locked(private_dir(self.home / "locks") / LOCK_FILE):
            rows = self._read()
            yield rows
            body = json.dumps({"format": FORMAT, "keys": rows}, indent=2) + "\n"
            write_atomic(self.path, body, mode=0o600)


def _key(row: dict[str, Any]) -> Key:
    return Key(
        name=row["name"],
        scope=row["scope"],
        retrieve=bool(row.get("retrieve", False)),
        created_at=float(row.get("created_at", 0.0)),
        hint=str(row.get("hint", "")),
    )
