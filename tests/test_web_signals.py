"""The heatmap switch in the web UI (headless Chromium, the real daemon, the tiny real model).

Signals are on by default (``sampling.signals``): each switch position shades the tokens by its
own signal, the hover card lists them, and "surprise" shades the person's own text.
"""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.test_web import ARTIFACTS, CHROMIUM, FIRST_TEXT, DaemonThread, N, daemon, model_path, ui  # noqa: F401


def _shades(page: Any, selector: str) -> list[str]:
    return list(
        page.evaluate(
            "(sel) => [...document.querySelectorAll(sel)].map((s) => s.style.getPropertyValue('--a'))",
            selector,
        )
    )


def _expected(tokens: list[dict[str, Any]], kind: str) -> list[str]:
    def value(t: dict[str, Any]) -> float:
        if kind == "entropy":
            return min(1.0, t["entropy"] / 6)
        if kind == "ease":
            return 1.0 if t["ease"] is None else t["ease"]
        return float(t["attention"]["recent"])

    return [f"{value(t):.3f}" for t in tokens]


def test_heatmap_switch_shades_by_each_signal(daemon: DaemonThread, ui: Any) -> None:  # noqa: F811
    ui.goto(daemon.url)
    ui.fill("#first-text", FIRST_TEXT)
    ui.click("#first-go")
    expect(ui.locator("#offers .card[data-id]")).to_have_count(N, timeout=60_000)
    card = ui.locator("#offers .card[data-id]").first
    node_id = card.get_attribute("data-id")
    expect(card.locator(".tok")).not_to_have_count(0, timeout=30_000)
    tokens = daemon.api(f"/api/nodes/{node_id}")["node"]["tokens"]  # the API's JSON carries the signals
    assert {"entropy", "ease", "ease_layer", "attention"} <= set(tokens[0])
    offer_id = daemon.api(f"/api/nodes/{node_id}")["node"]["offer_id"]
    offer = daemon.api(f"/api/offers/{offer_id}")  # the offer's JSON: signal facts and the person's surprise
    offer = offer.get("offer", offer)
    assert offer["meta"]["signals"]["layers"] == 2 and offer["meta"]["surprise"]
    selector = f'#offers .card[data-id="{node_id}"] .tok'

    hidden = ui.evaluate(
        "() => [...document.querySelectorAll('#heat-kind option')].map((o) => [o.value, o.hidden])"
    )
    assert dict(hidden) == {
        "probability": False,
        "entropy": False,
        "ease": False,
        "attention": False,
        "surprise": False,
    }
    for kind in ("entropy", "ease", "attention"):
        ui.select_option("#heat-kind", kind)
        assert _shades(ui, selector) == _expected(tokens, kind), kind

    ui.select_option("#heat-kind", "surprise")  # the person's text gets shaded, token by token
    expect(ui.locator("#path .seg.human .tok").first).to_be_visible()
    ui.locator("#path .seg.human .tok").nth(2).hover()
    expect(ui.locator("#tokencard")).to_contain_text("your word")

    ui.select_option("#heat-kind", "entropy")
    ui.locator(selector).filter(has_text=re.compile(r"\S")).first.hover()
    expect(ui.locator("#tokencard .tc-sig").first).to_contain_text("entropy")
    expect(ui.locator("#tokencard")).to_contain_text("ease")
    expect(ui.locator("#tokencard")).to_contain_text("attention")
    ARTIFACTS.mkdir(exist_ok=True)
    ui.screenshot(path=str(ARTIFACTS / "web-ui-signals.png"))
    ui.select_option("#heat-kind", "probability")
