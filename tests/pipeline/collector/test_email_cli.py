"""`webhouse email links`: the CLI signs with the collector's settings, so its links verify there."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pipeline.collector import email_links as el
from tools.cli import main

HTML = '<html><body><a href="https://shop.example/new?a=1&amp;b=2">New</a></body></html>'


def tracked(html: str) -> tuple[list[el.EmailLink], el.EmailLink]:
    clicks = [unescape(h) for h in re.findall(r'href="([^"]+)"', html)]
    pixel = unescape(re.findall(r'<img src="([^"]+)"', html)[0])
    links = [el.verify(urlsplit(c).path.removeprefix(el.CLICK_PATH), "c", ["cli-secret"]) for c in clicks]
    token = urlsplit(pixel).path.removeprefix(el.OPEN_PATH).removesuffix(el.PIXEL_SUFFIX)
    return links, el.verify(token, "o", ["cli-secret"])


@pytest.fixture(autouse=True)
def _email_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOUSE_COLLECTOR__EMAIL__LINK_SECRETS", '["cli-secret", "older-secret"]')
    monkeypatch.setenv("WEBHOUSE_COLLECTOR__EMAIL__PUBLIC_BASE_URL", "https://t.shop.example")


def test_one_recipient(tmp_path: Path) -> None:
    source, out = tmp_path / "campaign.html", tmp_path / "ann.html"
    source.write_text(HTML)
    args = ["email", "links", "--campaign", "winter", "--customer-id", "cust-1", "--send-id", "s-1"]
    assert main([*args, "--input", str(source), "--output", str(out)]) == 0
    html = out.read_text()
    assert html.count("https://t.shop.example/e/") == 2
    clicks, opened = tracked(html)
    assert clicks == [el.EmailLink("winter", "s-1", "cust-1", "https://shop.example/new?a=1&b=2")]
    assert opened == el.EmailLink("winter", "s-1", "cust-1")


def test_many_recipients(tmp_path: Path) -> None:
    source, recipients, out_dir = tmp_path / "campaign.html", tmp_path / "to.csv", tmp_path / "out"
    source.write_text(HTML)
    recipients.write_text("customer_id,send_id\ncust-1,s-1\ncust/2,s-2\n")
    args = [
        "email",
        "links",
        "--campaign",
        "winter",
        "--recipients",
        str(recipients),
        "--out-dir",
        str(out_dir),
    ]
    assert main([*args, "--input", str(source)]) == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["cust-1.html", "cust_2.html"]
    _, opened = tracked((out_dir / "cust_2.html").read_text())
    assert opened == el.EmailLink("winter", "s-2", "cust/2")


def test_missing_recipient_is_a_usage_error(tmp_path: Path) -> None:
    source = tmp_path / "campaign.html"
    source.write_text(HTML)
    assert main(["email", "links", "--campaign", "c", "--input", str(source)]) == 2
