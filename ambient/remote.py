"""Where text leaves the machine: the remote services a config points at, the plain-http rule, the words.

By default nothing leaves: the model samples here and memory is an embedded
index. Two settings can point elsewhere: ``model.base_url`` (a backend other
than ``local`` samples on that server) and ``memory.url`` (memory on a Chroma
server). This module is the one place that reads such a URL: its scheme, its
``host:port``, and whether the host is this machine (loopback: ``127.0.0.0/8``,
``::1``, ``localhost``).

- :func:`check` refuses plain ``http://`` to a host that is not loopback unless
  ``model.allow_plain_http`` / ``memory.allow_plain_http`` says so; the config
  calls it on every load and every override.
- :func:`announcements` says, one line per remote service, which text goes to
  which host; ``ambient run`` prints them at start.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ambient.errors import ConfigError

if TYPE_CHECKING:  # the config calls check(); importing it here at run time would be a circle
    from ambient.config import Config

MODEL_HTTP_PORT = 80  # an OpenAI-compatible server's port when the URL gives none (as http.client)
CHROMA_HTTP_PORT = 8000  # `chroma run`'s port when the URL gives none
HTTPS_PORT = 443

SAMPLING_SENDS = "every prompt (the text around your change and the memory retrieved for it) goes to {where}"
MEMORY_SENDS = (
    "the text of every node and its embedding is stored on {where}, and every search sends "
    "the embedding of its query there"
)


@dataclasses.dataclass(frozen=True)
class Address:
    """A server's ``scheme``, ``host`` and ``port`` (the default port filled in)."""

    scheme: str
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def plain(self) -> bool:
        """Unencrypted: ``http://`` rather than ``https://``."""
        return self.scheme == "http"

    @property
    def host_port(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine: ``localhost``, ``127.0.0.0/8`` or ``::1`` (IPv4-mapped too)."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False  # a name other than localhost: it may resolve anywhere
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def parse_address(url: str, key: str, *, http_port: int, hint: str = "") -> Address:
    """``url`` (``http(s)://HOST[:PORT][/path]``, or ``HOST:PORT`` meaning http) as an :class:`Address`.

    Raises :class:`ConfigError` naming ``key`` when it is not a server address.
    """
    raw = url.strip()
    parts = urlsplit(raw if "://" in raw else f"http://{raw}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{key} = {url!r} is not a server address: use http://HOST:PORT or https://HOST:PORT{hint}"
        )
    try:
        port = parts.port or (HTTPS_PORT if parts.scheme == "https" else http_port)
    except ValueError:
        raise ConfigError(f"{key} = {url!r} has a bad port: use http://HOST:PORT (1..65535)") from None
    return Address(parts.scheme, parts.hostname, port)


def model_address(url: str) -> Address:
    """``model.base_url`` as an :class:`Address` (http without a port: 80)."""
    return parse_address(url, "model.base_url", http_port=MODEL_HTTP_PORT)


def memory_address(url: str) -> Address:
    """``memory.url`` as an :class:`Address` (http without a port: 8000, as `chroma run`)."""
    hint = " (or empty for the embedded index)"
    return parse_address(url, "memory.url", http_port=CHROMA_HTTP_PORT, hint=hint)


@dataclasses.dataclass(frozen=True)
class Service:
    """One configured server that ambient sends text to (which may be this machine)."""

    role: str  # "sampling" or "memory"
    key: str  # the setting that names it, e.g. "model.base_url"
    url: str
    address: Address
    allow_key: str  # the setting that allows plain http to another host
    allowed: bool
    sends: str  # what goes there, with "{where}" for the host

    @property
    def remote(self) -> bool:
        return not self.address.loopback

    def describe(self) -> str:
        """One line: which text leaves the machine, to which host, and how."""
        how = f"unencrypted ({self.allow_key} = true)" if self.address.plain else "over https"
        return f"{self.role} ({self.key}): {self.sends.format(where=self.address.host_port)}, {how}"


def services(config: Config) -> list[Service]:
    """The servers the config sends text to: sampling (a backend other than local), memory (when on)."""
    found: list[Service] = []
    model, memory = config.model, config.memory
    if model.backend != "local" and model.base_url.strip():
        found.append(
            Service(
                role="sampling",
                key="model.base_url",
                url=model.base_url,
                address=model_address(model.base_url),
                allow_key="model.allow_plain_http",
                allowed=model.allow_plain_http,
                sends=SAMPLING_SENDS,
            )
        )
    if memory.enabled and memory.url.strip():
        found.append(
            Service(
                role="memory",
                key="memory.url",
                url=memory.url,
                address=memory_address(memory.url),
                allow_key="memory.allow_plain_http",
                allowed=memory.allow_plain_http,
                sends=MEMORY_SENDS,
            )
        )
    return found


def check(config: Config) -> None:
    """Refuse plain ``http://`` to a host other than this machine unless its ``allow_plain_http`` is set."""
    for service in services(config):
        if service.remote and service.address.plain and not service.allowed:
            env = "AMBIENT_" + service.allow_key.replace(".", "_").upper()
            host, port, where = service.address.host, service.address.port, service.address.host_port
            raise ConfigError(
                f"{service.key} = {service.url!r} would send text unencrypted to {where}, "
                f"which is not this machine: use https://, or a loopback address (an SSH tunnel: "
                f"ssh -L {port}:127.0.0.1:{port} {host}), or set {service.allow_key} = true ({env}=1) "
                "if you trust the network in between"
            )


def announcements(config: Config) -> list[str]:
    """One line per remote service: which text leaves this machine and to which host (none by default)."""
    return [service.describe() for service in services(config) if service.remote]
