"""The daemon: debounce, latest wins, a bounded queue, clean shutdown, failures, sources, no side effects."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ambient.app import App
from ambient.config import Config, load_config
from ambient.daemon import Daemon
from ambient.errors import AmbientError
from ambient.events import Subscriber
from ambient.offers import Overrides
from ambient.pipeline import Busy, Superseded
from ambient.server import Server, serve
from ambient.source_host import SourceHost
from ambient.sources import Source, SourceEvent
from ambient.store import TreeStore
from ambient.tree import Offer, OfferState, Status
from tests.fakes import FakeSampler
from tests.places import Installer

pytestmark = pytest.mark.strict_loop  # the daemon never blocks its event loop


def make_config(home: Path, **changes: Any) -> Config:
    config = load_config(env={"AMBIENT_HOME": str(home)})
    defaults = {"memory__enabled": False, "server__port": 0, "server__debounce_ms": 0, "sampling__n": 2}
    return config.replace(**{**defaults, **changes})


@dataclasses.dataclass
class Rig:
    daemon: Daemon
    sampler: FakeSampler
    sub: Subscriber
    root_id: str

    @property
    def store(self) -> TreeStore:
        return self.daemon.app.store

    def event(self, key: str = "k", **kw: Any) -> SourceEvent:
        """An event at the root; sampling overrides (n, max_tokens, ...) among ``kw`` go in ``overrides``."""
        rest = {k: v for k, v in kw.items() if k not in Overrides.names()}
        return SourceEvent("test", key, self.root_id, overrides=Overrides.from_mapping(kw), **rest)

    async def wait_for(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        async def wait() -> dict[str, Any]:
            while True:
                message = await self.sub.queue.get()
                assert message is not None
                event: dict[str, Any] = json.loads(message)
                if event["type"] == kind:
                    return event["data"]

        return await asyncio.wait_for(wait(), timeout)

    async def idle(self, timeout: float = 5.0) -> None:
        async def wait() -> None:
            p = self.daemon.pipeline
            while p.current is not None or p.status()["waiting"] or p.status()["debouncing"]:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(wait(), timeout)


@pytest.fixture
async def rig(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    opts = getattr(request, "param", {})
    sampler = FakeSampler(delay=opts.get("delay", 0.0), fail_after=opts.get("fail_after"))
    config = make_config(tmp_path, **opts.get("config", {}))
    app = App(config, sampler=sampler)
    async with Daemon(config, app, queue_size=opts.get("queue_size", 32)) as daemon:
        _, root = await daemon.run_blocking(app.store.create_tree, "Once upon a time")
        yield Rig(daemon, sampler, daemon.subscribe(), root.id)
    app.close()


# ------------------------------------------------------------------ pipeline
@pytest.mark.parametrize("rig", [{"config": {"server__debounce_ms": 80}}], indirect=True)
async def test_events_for_one_key_are_debounced(rig: Rig) -> None:
    for i in range(5):
        await rig.daemon.submit(rig.event(text=f"draft {i}", max_tokens=2))
        await asyncio.sleep(0.01)
    await rig.daemon.submit(rig.event(key="other", text="elsewhere", max_tokens=2))
    await asyncio.sleep(0.05)
    assert rig.sampler.prompts == []  # still waiting for quiet
    await rig.wait_for("offer_done")
    await rig.wait_for("offer_done")
    await rig.idle()
    assert sorted(rig.sampler.prompts) == ["draft 4", "elsewhere"]


@pytest.mark.parametrize("rig", [{"config": {"server__debounce_ms": 10_000}}], indirect=True)
async def test_an_explicit_request_is_not_debounced(rig: Rig) -> None:
    offer = await asyncio.wait_for(rig.daemon.offer_now(rig.event(max_tokens=2)), 5)
    assert offer.state == OfferState.DONE and len(offer.node_ids) == 2


@pytest.mark.parametrize("rig", [{"delay": 0.02}], indirect=True)
async def test_latest_event_for_a_key_cancels_the_older_sampling(rig: Rig) -> None:
    older = asyncio.ensure_future(rig.daemon.offer_now(rig.event(text="old", max_tokens=200)))
    started = await rig.wait_for("offer_started")
    await rig.wait_for("token")
    newer = await asyncio.wait_for(rig.daemon.offer_now(rig.event(text="new", max_tokens=3)), 10)
    cancelled: Offer = await older
    assert cancelled.id == started["offer_id"]
    assert cancelled.state == OfferState.CANCELLED
    partial = [rig.store.get_node(i) for i in cancelled.node_ids]
    assert partial and all(0 < len(n.tokens or ()) < 200 for n in partial)
    assert newer.state == OfferState.DONE
    assert rig.sampler.prompts == ["old", "new"]


@pytest.mark.parametrize("rig", [{"delay": 0.02}], indirect=True)
async def test_a_newer_event_drops_an_older_one_still_waiting(rig: Rig) -> None:
    busy = asyncio.ensure_future(rig.daemon.offer_now(rig.event(key="a", text="a", max_tokens=20)))
    await rig.wait_for("offer_started")
    waiting = asyncio.ensure_future(rig.daemon.offer_now(rig.event(key="b", text="b1", max_tokens=2)))
    await asyncio.sleep(0)
    latest = asyncio.ensure_future(rig.daemon.offer_now(rig.event(key="b", text="b2", max_tokens=2)))
    with pytest.raises(Superseded):
        await asyncio.wait_for(waiting, 5)
    await asyncio.wait_for(asyncio.gather(busy, latest), 10)
    assert rig.sampler.prompts == ["a", "b2"]  # different keys do not cancel each other


@pytest.mark.parametrize("rig", [{"delay": 0.02, "queue_size": 2}], indirect=True)
async def test_the_queue_is_bounded_and_drops_the_oldest(rig: Rig) -> None:
    running = asyncio.ensure_future(rig.daemon.offer_now(rig.event(key="run", text="run", max_tokens=10)))
    await rig.wait_for("offer_started")
    waiting = [
        asyncio.ensure_future(rig.daemon.offer_now(rig.event(key=f"k{i}", text=f"k{i}", max_tokens=1)))
        for i in range(5)
    ]
    await asyncio.sleep(0)
    status = rig.daemon.pipeline.status()
    assert status["waiting"] == 2 and status["dropped"] == 3
    results = await asyncio.wait_for(asyncio.gather(running, *waiting, return_exceptions=True), 10)
    assert [type(r).__name__ for r in results[1:4]] == ["Busy"] * 3
    assert all(isinstance(r, Offer) for r in results[4:])
    assert rig.sampler.prompts == ["run", "k3", "k4"]


async def test_tokens_and_offers_are_published_in_order(rig: Rig) -> None:
    await rig.daemon.submit(rig.event(max_tokens=3))
    started = await rig.wait_for("offer_started")
    assert started["n"] == 2 and started["parent_id"] == rig.root_id
    assert started["provenance"]["source"]["kind"] == "test"
    seen = []
    while len(seen) < 6:
        seen.append(await rig.wait_for("token"))
    assert [t["text"] for t in seen if t["branch"] == 1] == [" b1w0", " b1w1", " b1w2"]
    assert {t["offer_id"] for t in seen} == {started["offer_id"]}
    done = await rig.wait_for("offer_done")
    assert done["offer"]["state"] == "done"
    assert [n["text"] for n in done["nodes"]] == [" b0w0 b0w1 b0w2", " b1w0 b1w1 b1w2"]


async def test_on_offer_callbacks_run_for_each_offer(rig: Rig) -> None:
    seen: list[str] = []

    async def later(offer: Offer) -> None:
        seen.append("async " + offer.id)

    rig.daemon.on_offer(lambda offer: seen.append("sync " + offer.id) and None)
    rig.daemon.on_offer(later)
    offer = await rig.daemon.offer_now(rig.event(max_tokens=1))
    await asyncio.sleep(0.01)
    assert seen == [f"sync {offer.id}", f"async {offer.id}"]


# ----------------------------------------------------------------- failures
@pytest.mark.parametrize("rig", [{"fail_after": 2}], indirect=True)
async def test_a_failing_sampler_gives_offer_failed_and_the_next_event_works(rig: Rig) -> None:
    await rig.daemon.submit(rig.event(max_tokens=10))
    failed = await rig.wait_for("offer_failed")
    assert "fake sampler failed" in failed["error"]
    assert failed["offer"]["state"] == "failed"
    assert [n["text"] for n in failed["nodes"]] == [" b0w0 b0w1", " b1w0 b1w1"]
    assert all(n["meta"]["finish_reason"] == "error" for n in failed["nodes"])
    rig.sampler.fail_after = None
    offer = await asyncio.wait_for(rig.daemon.offer_now(rig.event(max_tokens=2)), 5)
    assert offer.state == OfferState.DONE


async def test_bad_sampling_overrides_fail_the_event_not_the_daemon(rig: Rig) -> None:
    with pytest.raises(AmbientError, match="n must be between"):
        await rig.daemon.offer_now(rig.event(n=1000))
    failed = await rig.wait_for("offer_failed")
    assert failed["offer"] is None and "n must be" in failed["error"]
    assert (await rig.daemon.offer_now(rig.event(max_tokens=1))).state == OfferState.DONE


# ----------------------------------------------------------------- shutdown
async def test_shutdown_cancels_sampling_and_keeps_acknowledged_picks(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    app = App(config, sampler=FakeSampler(delay=0.02))
    daemon = Daemon(config, app)
    await daemon.start()
    _, root = await daemon.run_blocking(app.store.create_tree, "Once")
    first = await daemon.offer_now(SourceEvent("test", "k", root.id, overrides=Overrides(max_tokens=2)))
    picked = await daemon.run_blocking(app.store.pick, first.node_ids[1])
    sub = daemon.subscribe()
    long_event = SourceEvent("test", "k", root.id, overrides=Overrides(max_tokens=500), debounce=False)
    await daemon.submit(long_event)
    while json.loads(await sub.queue.get() or "{}").get("type") != "token":
        pass
    await asyncio.wait_for(daemon.stop(), 10)
    with pytest.raises(Busy):
        await daemon.submit(SourceEvent("test", "k", root.id))
    app.close()

    with TreeStore(config.db_path) as store:
        assert store.get_node(picked.id).status == Status.PICKED
        offers = store.offers_at(root.id)
        assert [o.state for o in offers] == [OfferState.DONE, OfferState.CANCELLED]
        assert all(store.get_node(i).text for i in offers[1].node_ids)  # partial text is kept
        assert [a["action"] for a in store.actions()] == ["pick"]


async def test_offers_left_streaming_by_a_crash_are_failed_at_start(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    with TreeStore(config.db_path) as store:
        _, root = store.create_tree("Once")
        offer = store.begin_offer(root.id, {})
    app = App(config, sampler=FakeSampler())
    async with Daemon(config, app) as daemon:
        stored = await daemon.run_blocking(app.store.get_offer, offer.id)
        assert stored.state == OfferState.FAILED and stored.error == "daemon stopped while sampling"
    app.close()


async def test_the_daemon_serves_on_loopback_and_cleans_up(tmp_path: Path) -> None:
    import aiohttp

    config = make_config(tmp_path)
    app = App(config, sampler=FakeSampler())
    async with serve(config, app) as server:
        assert server.port != 0
        base = f"http://127.0.0.1:{server.port}"
        assert server.url == f"{base}/#token={server.token}"  # the fragment: never sent to a server
        assert json.loads((tmp_path / "daemon.json").read_text())["port"] == server.port
        jar = aiohttp.CookieJar(unsafe=True)  # like a browser, keep cookies of 127.0.0.1
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            async with session.get(server.url) as resp:
                assert resp.status == 200 and "<title>ambient</title>" in await resp.text()
            assert len(jar) == 0  # no cookie: other servers on 127.0.0.1 would get it
            ws = await session.ws_connect(f"{base}/api/events")
            await ws.send_json({"type": "auth", "token": server.token})  # what the page sends first
            assert (await ws.receive_json())["type"] == "hello"
    assert (await ws.receive()).type.name in ("CLOSE", "CLOSED", "CLOSING")
    assert not (tmp_path / "daemon.json").exists()
    app.close()


async def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    async with serve(config, App(config, sampler=FakeSampler())) as first:
        second_config = make_config(tmp_path / "second")
        second_app = App(second_config, sampler=FakeSampler())
        with pytest.raises(AmbientError, match="already running"):
            async with serve(second_config, second_app, port=first.port):
                pass
        assert second_app.__dict__.get("store") is None  # refused before anything slow started
        second_app.close()


def test_a_non_loopback_host_is_refused(tmp_path: Path) -> None:
    config = make_config(tmp_path, server__host="0.0.0.0")
    with pytest.raises(AmbientError, match="loopback"):
        Server(Daemon(config, App(config, sampler=FakeSampler())))


# ---------------------------------------------------------- nothing outside
def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


async def test_nothing_is_written_anywhere_but_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, notes = tmp_path / "home", tmp_path / "notes"
    notes.mkdir()
    (notes / "idea.md").write_text("A thought about rivers.\n")
    monkeypatch.chdir(notes)
    config = make_config(home)
    app = App(config, sampler=FakeSampler())
    connections: list[Any] = []

    async def no_network(*args: Any, **kwargs: Any) -> None:
        connections.append(args)
        raise AssertionError("the daemon must not connect anywhere")

    async with Daemon(config, app) as daemon:
        before = _snapshot(notes)
        monkeypatch.setattr(asyncio.get_running_loop(), "create_connection", no_network)
        _, root = await daemon.run_blocking(app.store.create_tree, (notes / "idea.md").read_text())
        for i in range(3):
            event = SourceEvent("test", f"k{i}", root.id, overrides=Overrides(max_tokens=2))
            offer = await daemon.offer_now(event)
            await daemon.run_blocking(app.store.pick, offer.node_ids[0])
        assert _snapshot(notes) == before
    app.close()
    assert connections == []
    assert set(_snapshot(home)) <= {"ambient.sqlite3", "ambient.sqlite3-wal", "ambient.sqlite3-shm", "token"}


# ------------------------------------------------------------------ sources
@dataclasses.dataclass(frozen=True)
class FlakyOptions:
    crashes: int = 2


class FlakySource(Source):
    name: ClassVar[str] = "flaky"
    options_class: ClassVar[type[Any]] = FlakyOptions
    runs = 0
    unloaded = False

    async def setup(self) -> None:
        pass

    async def run(self) -> None:
        type(self).runs += 1
        if type(self).runs <= self.options.crashes:
            raise RuntimeError("lost the connection")
        await asyncio.Event().wait()

    async def unload(self) -> None:
        type(self).unloaded = True


class BrokenSource(FlakySource):
    name: ClassVar[str] = "broken"

    async def setup(self) -> None:
        raise AmbientError("cannot reach the thing: set sources.broken.url")


async def test_sources_are_set_up_restarted_and_unloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, install_places: Installer
) -> None:
    install_places({"flaky": "tests.test_daemon:FlakySource", "broken": "tests.test_daemon:BrokenSource"})
    monkeypatch.setattr(SourceHost, "backoff_initial", 0.01)
    FlakySource.runs, FlakySource.unloaded = 0, False
    tables = {"flaky": {"crashes": "2"}, "broken": {}, "missing": {}}
    config = make_config(tmp_path, sources=tables)
    app = App(config, sampler=FakeSampler())
    async with Daemon(config, app) as daemon:
        for _ in range(100):
            if FlakySource.runs >= 3:
                break
            await asyncio.sleep(0.01)
        status = daemon.status()["sources"]
        assert status["flaky"]["state"] == "running" and status["flaky"]["restarts"] == 2
        assert "lost the connection" in status["flaky"]["last_error"]
        assert status["broken"] == {
            "state": "failed",
            "restarts": 0,
            "last_error": "cannot reach the thing: set sources.broken.url",
            "detail": {},
        }
        assert "unknown source [sources.missing]" in status["missing"]["last_error"]
        assert status["manual"]["state"] == "running"
    assert FlakySource.unloaded
    app.close()


async def test_bad_source_options_are_reported_not_fatal(tmp_path: Path, install_places: Installer) -> None:
    install_places({"flaky": "tests.test_daemon:FlakySource"})
    config = make_config(tmp_path, sources={"flaky": {"crashes": "many", "colour": 1}})
    app = App(config, sampler=FakeSampler())
    async with Daemon(config, app) as daemon:
        assert "sources.flaky" in daemon.sources.problems["flaky"]
    app.close()


# ----------------------------------------------------------------- subscribers
async def test_a_slow_subscriber_is_dropped_not_waited_for() -> None:
    sub = Subscriber(maxsize=3)
    for i in range(5):
        sub.put(f"m{i}")
    assert sub.overflowed
    assert sub.queue.get_nowait() is None
