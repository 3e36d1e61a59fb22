"""Faults inside the daemon: the sampler failing mid-stream, a source crashing.

* A sampler that raises after some tokens (MemoryError, a dropped connection, a plain bug):
  the offer is stored as failed with the reason, the partial text is kept and marked as such
  (``finish_reason = "error"``), the UI gets ``offer_failed``, and the next event works.
* A source whose ``run()`` raises (the real notes and Discord integrations, with the fault
  injected inside them): restarted with a growing backoff, reported by ``/api/status``,
  ``ambient status`` and a ``source_status`` event for the UI; the other sources keep working.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ambient.app import App
from ambient.commands.daemon import _describe
from ambient.daemon import Daemon
from ambient.sampling.base import OnToken, SampleResult, SamplingOptions
from ambient.source_host import SourceHost
from ambient.sources import SourceEvent
from ambient.tree import OfferState, Status
from tests.events import next_event
from tests.fakes import FakeSampler
from tests.reliability.helpers import make_config

pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


class FailingSampler(FakeSampler):
    """Streams ``after`` steps, then raises ``error`` (once, unless ``times`` says more)."""

    def __init__(self, error: BaseException, after: int, times: int = 1) -> None:
        super().__init__()
        self.error, self.after, self.times = error, after, times

    def generate(
        self,
        prompt: str,
        options: SamplingOptions,
        on_token: OnToken | None = None,
        cancel: threading.Event | None = None,
    ) -> SampleResult:
        if self.times > 0:
            self.times -= 1
            self.fail_after = self.after
        else:
            self.fail_after = None
        try:
            return super().generate(prompt, options, on_token, cancel)
        except RuntimeError:
            raise self.error from None


@pytest.mark.parametrize(
    "error",
    [
        MemoryError("CUDA out of memory"),
        ConnectionResetError("the sampling server dropped the connection"),
        ValueError("a bug in a sampler"),
    ],
    ids=["memory", "connection", "bug"],
)
async def test_a_sampler_failing_mid_stream_fails_the_offer_and_keeps_the_partial_text(
    tmp_path: Path, error: BaseException
) -> None:
    config = make_config(tmp_path, sampling__max_tokens=10)
    app = App(config, sampler=FailingSampler(error, after=3))
    async with Daemon(config, app) as daemon:
        sub = daemon.subscribe()
        _, root = await daemon.run_blocking(app.store.create_tree, "The tide came in")
        await daemon.submit(SourceEvent("test", "k", root.id, debounce=False))
        failed = await next_event(sub, "offer_failed")
        assert failed["error"] == f"{type(error).__name__}: {error}"
        stored = await daemon.run_blocking(app.store.get_offer, failed["offer_id"])
        assert stored.state == OfferState.FAILED and stored.error == failed["error"]
        nodes = [await daemon.run_blocking(app.store.get_node, i) for i in stored.node_ids]
        assert [n.text for n in nodes] == [" b0w0 b0w1 b0w2", " b1w0 b1w1 b1w2"]
        assert all(n.meta["finish_reason"] == "error" and n.status == Status.OFFERED for n in nodes)
        again = await asyncio.wait_for(daemon.offer_now(SourceEvent("test", "k", root.id)), 10)
        assert again.state == OfferState.DONE and len(again.node_ids) == 2
        assert daemon.pipeline.status()["in_flight"] is None
    app.close()


async def test_a_sampler_failing_before_any_token_stores_an_empty_failed_offer(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    app = App(config, sampler=FailingSampler(MemoryError("no memory for the prompt"), after=0))
    async with Daemon(config, app) as daemon:
        _, root = await daemon.run_blocking(app.store.create_tree, "The tide came in")
        with pytest.raises(MemoryError):
            await daemon.offer_now(SourceEvent("test", "k", root.id))
        offers = await daemon.run_blocking(app.store.offers_at, root.id)
        assert [(o.state, o.node_ids) for o in offers] == [(OfferState.FAILED, ())]
        assert (await daemon.offer_now(SourceEvent("test", "k", root.id))).state == OfferState.DONE
    app.close()


# ------------------------------------------------------------------ sources
@pytest.fixture
async def notes_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Daemon, Path]]:
    monkeypatch.setattr(SourceHost, "backoff_initial", 0.05)
    notes = tmp_path / "notes"
    notes.mkdir()
    tables = {"notes": {"folders": [str(notes)], "quiet_ms": 20, "sidecars": False}}
    config = make_config(tmp_path / "home", sources=tables)
    app = App(config, sampler=FakeSampler())
    async with Daemon(config, app) as daemon:
        yield daemon, notes
    app.close()


async def _until(condition: Any, timeout: float = 10.0) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), timeout)


async def test_a_crashing_notes_source_is_restarted_reported_and_works_again(
    notes_daemon: tuple[Daemon, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from integrations.notes.source import NotesSource

    daemon, notes = notes_daemon
    sub = daemon.subscribe()
    real_handle = NotesSource._handle
    crashes = {"left": 2}

    async def crash_then_work(self: NotesSource, path: str) -> None:
        if crashes["left"]:
            crashes["left"] -= 1
            raise RuntimeError("the disk hiccuped")
        await real_handle(self, path)

    monkeypatch.setattr(NotesSource, "_handle", crash_then_work)
    notes_source = daemon.sources.get("notes")
    assert isinstance(notes_source, NotesSource)
    await _until(lambda: notes_source.watcher is not None and notes_source.watcher.alive)
    (notes / "a.md").write_text("First crash.\n")
    crashed = await next_event(sub, "source_status")
    assert crashed == {
        "name": "notes",
        "state": "restarting",
        "restarts": 1,
        "last_error": "RuntimeError: the disk hiccuped",
    }
    # While notes restarts, the manual source and the pipeline keep working.
    _, root = await daemon.run_blocking(daemon.app.store.create_tree, "Meanwhile")
    assert (await daemon.offer_now(SourceEvent("manual", "m", root.id))).state == OfferState.DONE
    assert (await next_event(sub, "source_status"))["state"] == "running"
    await _until(lambda: notes_source.watcher is not None and notes_source.watcher.alive)
    (notes / "a.md").write_text("Second crash.\n")
    assert (await next_event(sub, "source_status"))["restarts"] == 2
    await _until(lambda: daemon.sources.status()["notes"]["state"] == "running")
    await _until(lambda: notes_source.watcher is not None and notes_source.watcher.alive)
    (notes / "a.md").write_text("Now it works, and the note gets offers.\n")
    done = await next_event(sub, "offer_done")
    assert done["offer"]["state"] == "done"
    status = daemon.status()["sources"]
    assert status["notes"]["restarts"] == 2 and status["manual"]["state"] == "running"
    text = _describe({**daemon.status(), "counts": {"trees": 1, "nodes": 1}, "url": "http://x/"})
    assert "source notes: running, restarted 2x after crashes (last: RuntimeError: the disk hiccuped)" in text


async def test_backoff_grows_and_starts_over_after_a_healthy_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, install_places: Any
) -> None:
    from tests.test_daemon import FlakySource

    install_places({"flaky": "tests.test_daemon:FlakySource"})
    monkeypatch.setattr(SourceHost, "backoff_initial", 0.02)
    monkeypatch.setattr(SourceHost, "backoff_max", 0.08)
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(delay: float, *args: Any) -> Any:
        if delay >= 0.02:
            delays.append(delay)
        return await real_sleep(0)

    FlakySource.runs = 0
    config = make_config(tmp_path, sources={"flaky": {"crashes": "5"}})
    app = App(config, sampler=FakeSampler())
    async with Daemon(config, app) as daemon:
        monkeypatch.setattr(asyncio, "sleep", recording_sleep)
        await _until(lambda: FlakySource.runs >= 6)
        monkeypatch.setattr(asyncio, "sleep", real_sleep)
        assert daemon.sources.status()["flaky"]["restarts"] == 5
    app.close()
    assert delays[:5] == [0.02, 0.04, 0.08, 0.08, 0.08]


async def test_a_crashing_discord_source_is_restarted_and_the_others_keep_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import discord

    monkeypatch.setattr(SourceHost, "backoff_initial", 0.02)
    attempts: list[int] = []
    connected = asyncio.Event()

    async def flaky_login(self: discord.Client, token: str) -> None:
        attempts.append(1)
        if len(attempts) <= 2:
            raise ConnectionResetError("the gateway dropped the connection")

    async def stay_connected(self: discord.Client, *, reconnect: bool = True) -> None:
        connected.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(discord.Client, "login", flaky_login)
    monkeypatch.setattr(discord.Client, "connect", stay_connected)
    config = make_config(tmp_path, sources={"discord": {"token": "x" * 59, "guilds": [1]}})
    app = App(config, sampler=FakeSampler())
    async with Daemon(config, app) as daemon:
        await asyncio.wait_for(connected.wait(), 10)
        status = daemon.status()["sources"]
        assert status["discord"]["state"] == "running" and status["discord"]["restarts"] == 2
        assert "ConnectionResetError" in status["discord"]["last_error"]
        assert status["manual"] == {**status["manual"], "state": "running", "restarts": 0}
    app.close()
