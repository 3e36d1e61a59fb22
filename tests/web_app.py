"""The daemon's web application for in-process API tests (aiohttp's test client), with its real token."""

from __future__ import annotations

from aiohttp import web

from ambient.api import SITE, Site
from ambient.daemon import Daemon
from ambient.security import load_or_create_token
from ambient.server import create_app


def web_app(daemon: Daemon, port: int = 0) -> web.Application:
    """What ``ambient run`` serves for ``daemon`` (every installed place's routes included)."""
    return create_app(daemon, Site(load_or_create_token(daemon.config.home), port))


def token(app: web.Application) -> str:
    return app[SITE].token


def bearer(app: web.Application) -> dict[str, str]:
    """The Authorization header the UI's own requests carry."""
    return {"Authorization": f"Bearer {token(app)}"}
