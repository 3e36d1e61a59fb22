"""A place installed from outside ambient, through its entry point, gets every surface of the contract.

The package below is written into a temporary folder with the ``*.dist-info``
that pip would write for it (``tests/places.py``); nothing under ``ambient/``
knows its name. It adds options, an HTTP route, a WebSocket message type, a CLI
command and a benchmark.
"""

from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ambient import cli, places
from ambient.app import App
from ambient.config import Config, load_config
from ambient.server import serve
from tests.fakes import FakeSampler
from tests.places import Installer

pytestmark = pytest.mark.strict_loop  # the daemon never blocks its event loop

ECHO = textwrap.dedent(
    '''
    """A place that echoes: the smallest whole example of the place contract."""
    from __future__ import annotations

    import asyncio
    import dataclasses
    import json
    from typing import Any, ClassVar

    from aiohttp import web

    from ambient.api import daemon_of, json_response
    from ambient.sources import SocketHandler, Source
    from ambient.validation import Route


    @dataclasses.dataclass(frozen=True)
    class EchoOptions:
        greeting: str = "hello"


    async def status(request: web.Request) -> web.Response:
        place = daemon_of(request).sources.get("echo")
        greeting = place.options.greeting if place is not None else None
        return json_response({"greeting": greeting})


    class EchoSocket(SocketHandler):
        message_types: ClassVar[tuple[str, ...]] = ("echo",)

        async def message(self, message: dict[str, Any]) -> None:
            place = self.peer.running()
            await self.peer.send("echoed", {"said": message.get("text"), "greeting": place.options.greeting})


    def cmd_echo(args: Any, app: Any) -> int:
        print(json.dumps({"echo": args.words, "home": str(app.config.home)}))
        return 0


    class EchoSource(Source):
        name: ClassVar[str] = "echo"
        options_class: ClassVar[type[Any]] = EchoOptions
        socket_handler = EchoSocket

        @classmethod
        def routes(cls) -> tuple[Route, ...]:
            return (Route("GET", "/api/echo", status, "the echo place's greeting", "EchoStatus",
                          schemas={"EchoStatus": {"type": "object"}}, tag="echo"),)

        @classmethod
        def add_commands(cls, sub: Any) -> None:
            p = sub.add_parser("echo", help="say it back")
            p.add_argument("words", nargs="*")
            p.set_defaults(func=cmd_echo)

        @classmethod
        def benchmarks(cls) -> dict[str, str]:
            return {"echo": "echo_place.bench"}

        async def setup(self) -> None:
            self.started = True

        async def run(self) -> None:
            await asyncio.Event().wait()

        def status(self) -> dict[str, Any]:
            return {"greeting": self.options.greeting}
    '''
)


@pytest.fixture
def echo(install_places: Installer) -> Path:
    return install_places({"echo": "echo_place:EchoSource"}, files={"echo_place/__init__.py": ECHO})


def config_for(tmp_path: Path, **sources: Any) -> Config:
    config = load_config(env={"AMBIENT_HOME": str(tmp_path / "home")})
    return config.replace(memory__enabled=False, server__port=0, sources=sources)


async def test_an_outside_place_gets_its_options_route_socket_and_status(echo: Path, tmp_path: Path) -> None:
    config = config_for(tmp_path, echo={"greeting": "bonjour"})
    app = App(config, sampler=FakeSampler())
    async with serve(config, app) as server, aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {server.token}"}
        base = f"http://127.0.0.1:{server.port}"
        async with http.get(f"{base}/api/echo", headers=headers) as response:
            assert response.status == 200 and await response.json() == {"greeting": "bonjour"}
        async with http.get(f"{base}/api/openapi.json", headers=headers) as response:
            document = await response.json()
        assert "/api/echo" in document["paths"] and "EchoStatus" in document["components"]["schemas"]
        async with http.ws_connect(f"{base}/api/events", headers=headers) as ws:
            hello = await ws.receive_json()
            assert hello["data"]["sources"]["echo"]["detail"] == {"greeting": "bonjour"}
            await ws.send_str(json.dumps({"type": "echo", "text": "anyone there?"}))
            while (event := await ws.receive_json())["type"] != "echoed":
                pass
            assert event["data"] == {"said": "anyone there?", "greeting": "bonjour"}
    app.close()


async def test_bad_options_of_an_outside_place_are_one_line(echo: Path, tmp_path: Path) -> None:
    config = config_for(tmp_path, echo={"greting": "typo"})
    app = App(config, sampler=FakeSampler())
    async with serve(config, app) as server:
        assert "unknown key 'sources.echo.greting'" in server.daemon.sources.problems["echo"]
    app.close()


def test_an_outside_place_adds_a_command_and_a_benchmark(
    echo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ambient.commands.bench import benchmarks

    monkeypatch.setenv("AMBIENT_HOME", str(tmp_path / "home"))
    assert cli.main(["echo", "is", "anyone", "there"]) == 0
    assert json.loads(capsys.readouterr().out)["echo"] == ["is", "anyone", "there"]
    assert benchmarks()["echo"] == "echo_place.bench"
    assert "echo" in places.names() and {"notes", "discord", "speech", "manual"} <= set(places.names())


def test_a_place_that_cannot_be_imported_is_reported_not_fatal(
    install_places: Installer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_places({"ghost": "no_such_package.place:Ghost"})
    with caplog.at_level(logging.WARNING, logger="ambient.places"):
        assert "ghost" not in places.installed()
    assert "place ghost is not available: source 'ghost' needs the package 'no_such_package'" in caplog.text
    monkeypatch.setenv("AMBIENT_HOME", str(tmp_path / "home"))
    assert cli.main(["trees", "--json"]) == 0  # the rest of ambient works
    assert json.loads(capsys.readouterr().out) == []
