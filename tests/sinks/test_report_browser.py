"""`webhouse report html` in headless Chromium: the page draws, and nothing sticks out of its card.

Rendered over a simulated shop at two spans (five months of history, then one week cut with
``--since/--until``) and two window widths: the screenshot is not blank, and every element
inside a card lies within the card's box (a clipped chart, as the demo's "alerts per day"
was, fails this).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from pipeline.settings import TriggerSettings
from sinks.report import read_figures, write_html
from sinks.window import Window
from tests.browser.shop_server import chromium_browser
from tests.sinks.simulated import Landed, land_simulation

pytestmark = pytest.mark.slow

OVERFLOWING = """() => {
  const bad = [];
  for (const card of document.querySelectorAll('.card')) {
    const box = card.getBoundingClientRect();
    for (const el of card.querySelectorAll('*')) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      if (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5
          || r.bottom > box.bottom + 0.5) {
        bad.push(card.querySelector('h2').textContent + ': <' + el.tagName + '> '
                 + (el.textContent || '').slice(0, 40));
      }
    }
  }
  return bad;
}"""

# Share of the screenshot's pixels that are not the page's white background.
INKED = """async (png) => {
  const img = new Image();
  img.src = 'data:image/png;base64,' + png;
  await img.decode();
  const canvas = document.createElement('canvas');
  canvas.width = img.width; canvas.height = img.height;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const data = ctx.getImageData(0, 0, img.width, img.height).data;
  let inked = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i] < 240 || data[i + 1] < 240 || data[i + 2] < 240) inked++;
  }
  return inked / (data.length / 4);
}"""


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Landed:
    return land_simulation(
        tmp_path_factory.mktemp("report"), TriggerSettings(), seed=3, customers=80, days=150
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium_browser() as chromium:
        yield chromium


def _render(shop: Landed, tmp_path: Path, window: Window) -> Path:
    from sinks.duck import connect

    figures = read_figures(connect(shop.webhouse.settings, window))
    assert not figures.unavailable
    assert len(figures.alerts_by_day) > 1 and len(figures.events_by_day) > 1
    return write_html(figures, tmp_path / "report.html")


def _check(page: Page, path: Path, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(path.as_uri())
    assert page.locator(".card").count() == 10
    assert page.evaluate(OVERFLOWING) == []
    png = base64.b64encode(page.screenshot(full_page=True)).decode()
    assert page.evaluate(INKED, png) > 0.02


@pytest.mark.parametrize(
    ("span", "window"),
    [
        ("five months", Window()),
        ("one week", Window.parse("2026-11-10", "2026-11-17")),
    ],
)
def test_report_draws_and_fits_its_cards(
    shop: Landed, browser: Browser, tmp_path: Path, span: str, window: Window
) -> None:
    path = _render(shop, tmp_path, window)
    page = browser.new_page()
    try:
        for width in (1280, 760):
            _check(page, path, width)
    finally:
        page.close()


def test_time_axes_keep_empty_days(shop: Landed) -> None:
    from sinks.duck import connect

    figures = read_figures(connect(shop.webhouse.settings))
    for series in (figures.alerts_by_day, figures.events_by_day):
        days = [d for d, _ in series]
        assert days == sorted(days) and len(days) == len(set(days))
        first, last = date.fromisoformat(days[0]), date.fromisoformat(days[-1])
        assert len(days) == (last - first).days + 1  # every day, empty ones as zeros
