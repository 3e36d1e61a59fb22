"""The per-document personal switch, in headless Chromium against the real daemon and sampler.

The tiny real model samples with a real LoRA adapter (peft's, random, saved as ``ambient tune``
saves one). The page shows the switch only while an adapter is in use; with it on, half of each
offer's branches say they were written by the adapter; unticked, the document's next offer is
the base model's alone, and the choice is kept in the tree (a reload, the API) while another
document keeps its personal branches.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from ambient.config import load_config
from tests.adapter_helpers import random_adapter
from tests.test_web import FIRST_TEXT, SECOND_TEXT, DaemonThread, _poll, model_path, ui  # noqa: F401

N = 4
ADAPTER = "personal-001"


@pytest.fixture(scope="module")
def daemon(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonThread]:  # noqa: F811
    home = tmp_path_factory.mktemp("web-personal-home")
    adapter = random_adapter(model_path, tmp_path_factory.mktemp("adapters") / ADAPTER)
    config = load_config(env={"AMBIENT_HOME": str(home)}).replace(
        model__backend="local",
        model__path=str(model_path),
        model__device="cpu",
        model__adapter=str(adapter),
        model__adapter_share=0.5,
        server__port=0,
        sampling__n=N,
        sampling__max_tokens=8,
        sampling__seed=3,
        memory__enabled=False,
    )
    with DaemonThread(config) as d:
        yield d


def _labels(page: Any) -> list[str]:
    """Per card of the offer shown: the personal badge's text, or "" for a base branch."""
    cards = page.locator("#offers .card[data-id]")
    out = []
    for i in range(cards.count()):
        badge = cards.nth(i).locator(".badge.personal")
        out.append(badge.inner_text() if badge.count() else "")
    return out


def _offer_labels(daemon: DaemonThread, tree_id: str) -> list[list[str]]:
    """Per offer of the tree, oldest first: which model wrote each branch (from the store)."""
    view = daemon.api(f"/api/trees/{tree_id}")
    nodes = {n["id"]: n for n in view["nodes"]}
    return [[nodes[i]["meta"].get("adapter", "none") for i in o["node_ids"]] for o in view["offers"]]


def test_the_switch_keeps_a_document_to_the_base_model(daemon: DaemonThread, ui: Any) -> None:  # noqa: F811
    status = daemon.api("/api/status")
    assert status["adapter"] == {"name": ADAPTER, "share": 0.5, "problem": None}
    ui.goto(daemon.url)
    ui.fill("#first-text", FIRST_TEXT)
    ui.click("#first-go")
    expect(ui.locator("#offers .card[data-id]")).to_have_count(N, timeout=60_000)
    expect(ui.locator("#personal-wrap")).to_be_visible()
    assert ui.locator("#personal").is_checked()
    assert _labels(ui) == ["", f"· personal ({ADAPTER})"] * 2
    tree_id = daemon.api("/api/trees")["trees"][0]["id"]

    ui.locator("#personal").uncheck()
    _poll(lambda: daemon.api(f"/api/trees/{tree_id}")["tree"]["meta"].get("personal") is False)
    ui.click('#toolbar [data-act="regenerate"]')  # more like these: a new offer in the same document
    _poll(lambda: len(_offer_labels(daemon, tree_id)) == 2 and _done(daemon, tree_id), timeout=60)
    assert _offer_labels(daemon, tree_id) == [["none", ADAPTER] * 2, ["none"] * N]
    offers = daemon.api(f"/api/trees/{tree_id}")["offers"]
    assert offers[1]["settings"]["personal"] is False and "personal" not in offers[0]["settings"]

    ui.reload()
    expect(ui.locator("#personal-wrap")).to_be_visible()
    assert not ui.locator("#personal").is_checked()  # kept with the document

    # another document is not affected: its offers still mix base and personal branches
    ui.click("#new-doc")
    ui.fill("#new-text", SECOND_TEXT)
    ui.click("#new-go")
    expect(ui.locator("#offers .card[data-id]")).to_have_count(N, timeout=60_000)
    assert ui.locator("#personal").is_checked()
    assert _labels(ui) == ["", f"· personal ({ADAPTER})"] * 2


def _done(daemon: DaemonThread, tree_id: str) -> bool:
    return all(o["state"] != "streaming" for o in daemon.api(f"/api/trees/{tree_id}")["offers"])
