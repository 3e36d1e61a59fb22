"""``ambient bench discord``: from a ``/continue`` to the first continuation posted, and to all N.

Offline, through the test harness (``tests/integrations/discord/harness.py``, so
from a checkout with the dev requirements: ``make setup``): a fake Discord server
(dpytest) with a short conversation, the real bot, and a real daemon (no HTTP
server) as its hub, sampling with the default model. Each
run dispatches ``/continue`` through discord.py's own command tree with a
stand-in interaction and measures, from the moment the interaction arrives:

* **acknowledged**: the deferral Discord needs within 3 s;
* **first posted**: the first continuation message sent to the thread;
* **all posted**: the N-th one;
* **sampling**: the offer's own time in the daemon (context, model, storing).

The daemon samples all N branches in one batch, so the first continuation is
posted only when the batch is done; the gap between first and all is Discord
posting (here the fake HTTP layer, so it is a lower bound on a real network).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ambient.app import App
from ambient.config import Config
from ambient.errors import AmbientError
from ambient.models import prepare_default_model, resolve_model_path

CONVERSATION = (
    ("Alice", "Has anyone read the letter that washed up by the old mill?"),
    ("Bob", "Yes! It was in a green bottle, the ink half gone."),
    ("Carol", "What did it say? I only saw the photo."),
    ("Alice", "Something about a lighthouse keeper and a promise to come back in spring."),
    ("Bob", "Spring of which year though, the paper looked ancient."),
    ("Carol", "We should ask the museum. They date paper by the fibres."),
    ("Alice", "Good idea. I'll bring it on Saturday."),
    ("Bob", "And if it is real, who do we give it to?"),
)
RUNS, QUICK_RUNS = 5, 2


def run(config: Config, quick: bool = False) -> dict[str, Any]:
    """Run the benchmark with ``config``'s model and sampling settings, in a temporary home."""
    model_path = _model_path(config)
    with tempfile.TemporaryDirectory(prefix="ambient-bench-discord-") as home:
        bench_config = config.replace(home=Path(home), model__path=str(model_path), sources={})
        return asyncio.run(_run(bench_config, QUICK_RUNS if quick else RUNS))


def _model_path(config: Config) -> Path:
    """The default model (from the shared cache in AMBIENT_TEST_MODELS if set), or the configured one."""
    shared = os.environ.get("AMBIENT_TEST_MODELS")
    if shared and str(config.model.path).strip() == "default":
        return prepare_default_model(Path(shared))
    return resolve_model_path(config)


async def _run(config: Config, runs: int) -> dict[str, Any]:
    from ambient.daemon import Daemon

    config, memory = _memory_setting(config)
    app = App(config)
    try:
        async with Daemon(config, app) as daemon:
            with _quiet_dpytest():
                return await _measure(app, daemon, runs, memory)
    finally:
        app.close()


def _harness() -> tuple[Any, Any]:
    """The offline Discord of the tests, or one line saying how to get it."""
    try:
        from tests.integrations.discord.harness import OfflineDiscord, intents
    except ImportError as exc:
        raise AmbientError(
            f"ambient bench discord needs the test harness and dpytest ({exc}): run it from a "
            "checkout of ambient with the dev requirements installed (`make setup`)"
        ) from None
    return OfflineDiscord, intents


def _memory_setting(config: Config) -> tuple[Config, str]:
    """Keep retrieval on when the memory index can be used here (as in a real ``/continue``)."""
    if not config.memory.enabled:
        return config, "off"
    try:
        from ambient.memory import open_memory

        open_memory(config).close()
    except (ImportError, AmbientError) as exc:
        return config.replace(memory__enabled=False), f"off ({exc})"
    return config, "on"


async def _measure(app: App, daemon: Any, runs: int, memory: str) -> dict[str, Any]:
    from integrations.discord.bot import AmbientBot
    from integrations.discord.options import MAX_N, DiscordOptions

    OfflineDiscord, intents = _harness()

    n = min(app.config.sampling.n, MAX_N)
    bot = AmbientBot(daemon, DiscordOptions(guilds=(0,)), intents=intents())
    offline = OfflineDiscord(bot)
    await offline.start()
    try:
        # one member pulls run after run: the per-member limit would refuse the fifth (latency, not fairness)
        bot.options = DiscordOptions(guilds=(offline.guild.id,), n=n, max_n=max(n, 1), member_pulls=0)
        general = offline.channel("general")
        for who, text in CONVERSATION:
            await offline.say(text, general, who)
        await _one(offline, general, n)  # warm-up: first-call costs are not what a person waits for
        samples = [await _one(offline, general, n) for _ in range(runs)]
    finally:
        await offline.stop()
    sampler = app.sampler
    return {
        "model": Path(app.config.model.path).name,
        "device": str(getattr(sampler, "device", "?")),
        "n": n,
        "max_tokens": app.config.sampling.max_tokens,
        "runs": runs,
        "memory": memory,
        "acknowledged_ms": _summary([s["acknowledged_s"] * 1000 for s in samples]),
        "first_posted_s": _summary([s["first_posted_s"] for s in samples]),
        "all_posted_s": _summary([s["all_posted_s"] for s in samples]),
        "sampling_s": _summary([s["sampling_s"] for s in samples]),
        "per_run": samples,
    }


async def _one(offline: Any, channel: Any, n: int) -> dict[str, float]:
    """One ``/continue``; times relative to the interaction's arrival."""
    already = len(offline.sent)
    interaction = await offline.slash(channel, "Carol", n=n)
    posted = [s for s in offline.sent[already:] if s.custom_ids]
    if len(posted) != n:
        raise AmbientError(f"the bot posted {len(posted)} of {n} continuations: {interaction.texts()}")
    store = offline.bot.hub.app.store
    offer = store.get_offer(store.get_node(posted[0].custom_ids[0].rsplit(":", 1)[1]).offer_id or "")
    t0 = interaction.created
    return {
        "acknowledged_s": interaction.replies[0].at - t0,
        "first_posted_s": posted[0].at - t0,
        "all_posted_s": posted[-1].at - t0,
        "sampling_s": (offer.finished_at or offer.created_at) - offer.created_at,
    }


def _summary(values: list[float]) -> dict[str, float]:
    return {"p50": statistics.median(values), "min": min(values), "max": max(values)}


@contextlib.contextmanager
def _quiet_dpytest() -> Iterator[None]:
    """dpytest logs every fake HTTP call at INFO; the benchmark prints its own table."""
    import logging

    logger = logging.getLogger("discord")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def to_markdown(result: dict[str, Any]) -> str:
    lines = [
        "## Discord: `/continue` to continuations posted",
        "",
        f"Offline, through the test harness: dpytest's fake server, the real bot and a real daemon "
        f"(no HTTP server) sampling with **{result['model']}** on {result['device']}; "
        f"n = {result['n']} continuations of {result['max_tokens']} tokens, memory retrieval "
        f"{result['memory']}; {result['runs']} runs after one warm-up, an 8-message conversation as context. "
        "Times are from the interaction's arrival. All N are sampled in one batch, so the first is posted "
        "when sampling is done; first to all is the posting itself (fake HTTP: a lower bound).",
        "",
        "| | p50 | min | max |",
        "|---|---|---|---|",
        _row("acknowledged (defer; Discord allows 3 s)", result["acknowledged_ms"], "ms"),
        _row("first continuation posted", result["first_posted_s"], "s"),
        _row(f"all {result['n']} posted", result["all_posted_s"], "s"),
        _row("sampling in the daemon", result["sampling_s"], "s"),
    ]
    return "\n".join(lines)


def _row(label: str, summary: dict[str, float], unit: str) -> str:
    digits = 1 if unit == "ms" else 2
    cells = " | ".join(f"{summary[k]:.{digits}f} {unit}" for k in ("p50", "min", "max"))
    return f"| {label} | {cells} |"
