"""The microphone button draws its icon (an inline SVG in currentColor), so it needs no emoji font.

Headless Chromium on Debian has no emoji font: an emoji label showed a missing-glyph box. The button
is checked in both themes, idle and pressed (Chromium's fake capture device stands in for a
microphone), under the daemon's real Content-Security-Policy; screenshots go to artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes import FakeSampler
from tests.reliability.helpers import ThreadedDaemon, make_config
from tests.test_web import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

# Emoji and pictographs, dingbats, arrows and symbols, variation selector 16.
EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\ufe0f]")

# The painted colour of the shown shape of the icon, and of the button (the two must be the same).
PAINT = """() => {
  const button = document.querySelector("#mic");
  const shown = [...button.querySelectorAll("svg g")].filter((g) => getComputedStyle(g).display !== "none");
  const shape = shown.length === 1 ? shown[0].firstElementChild : null;
  const style = shape && getComputedStyle(shape);
  const paint = style && (style.fill !== "none" ? style.fill : style.stroke);
  return { shown: shown.map((g) => g.getAttribute("class")), paint, color: getComputedStyle(button).color };
}"""


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedDaemon]:
    with ThreadedDaemon(make_config(tmp_path_factory.mktemp("mic-button")), FakeSampler()) as rig:
        yield rig


@pytest.fixture
def page(rig: ThreadedDaemon) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    fake_mic = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *fake_mic])
        pg = browser.new_page(viewport={"width": 1400, "height": 300})
        problems: list[str] = []
        pg.on("pageerror", lambda exc: problems.append(str(exc)))
        pg.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
        pg.goto(rig.url)
        pg.wait_for_selector("#mic")
        yield pg
        browser.close()
        assert problems == [], problems


def _look(page: Any, label: str, shown: str, name: str) -> None:
    button = page.locator("#mic")
    assert button.inner_text().strip() == label
    assert not EMOJI.search(button.evaluate("b => b.innerHTML"))
    assert button.locator("svg").count() == 1
    box = button.locator("svg").bounding_box()
    assert box is not None and box["width"] >= 10 and box["height"] >= 10, box
    paint = page.evaluate(PAINT)
    assert paint["shown"] == [shown], paint
    assert paint["paint"] == paint["color"], paint  # currentColor: the icon follows the theme
    ARTIFACTS.mkdir(exist_ok=True)
    button.screenshot(path=str(ARTIFACTS / f"web-mic-{name}.png"))


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_mic_button_draws_its_icon_in_the_theme_colour(page: Any, theme: str) -> None:
    page.evaluate("t => { localStorage.setItem('ambient.theme', t); }", theme)
    page.reload()
    page.wait_for_selector("#mic")
    assert page.evaluate("() => document.documentElement.dataset.theme") == theme
    _look(page, "Speak", "when-idle", f"{theme}-idle")
    idle = page.evaluate(PAINT)["color"]

    page.click("#mic")
    page.wait_for_selector('#mic[aria-pressed="true"]')
    _look(page, "Stop", "when-pressed", f"{theme}-pressed")
    assert page.evaluate(PAINT)["color"] != idle  # pressed: the icon takes the button's other colour

    page.click("#mic")
    page.wait_for_selector('#mic[aria-pressed="false"]')
    _look(page, "Speak", "when-idle", f"{theme}-idle")
