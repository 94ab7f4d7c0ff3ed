"""Signed e-mail links: what verifies, what is refused, and the HTML rewrite."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import urlsplit

import pytest

from pipeline.collector import email_links as el
from pipeline.errors import ValidationError

SECRET = "s3cret-key"
LINK = el.EmailLink("cmp-42", "send-7", "cust-9", "https://shop.example/p/1?utm_source=mail&x=1")


def test_click_token_round_trips() -> None:
    token = el.sign(LINK, SECRET)
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token), "token must be URL-safe without escaping"
    assert el.verify(token, "c", [SECRET]) == LINK


def test_open_token_round_trips_without_url() -> None:
    link = el.EmailLink("cmp-42", "send-7", "cust-9")
    assert el.verify(el.sign(link, SECRET), "o", [SECRET]) == link


def test_unicode_fields_survive() -> None:
    link = el.EmailLink("Été 2026", "s", "kunde-ü", "https://shop.example/ä?q=ß")
    assert el.verify(el.sign(link, SECRET), "c", [SECRET]) == link


def _flip(text: str, index: int) -> str:
    ch = text[index]
    return text[:index] + ("A" if ch != "A" else "B") + text[index + 1 :]


@pytest.mark.parametrize("where", ["body_start", "body_end", "mac"])
def test_any_tampering_is_refused(where: str) -> None:
    token = el.sign(LINK, SECRET)
    body = token.partition(".")[0]
    index = {"body_start": 0, "body_end": len(body) - 2, "mac": len(body) + 3}[where]
    with pytest.raises(ValidationError) as info:
        el.verify(_flip(token, index), "c", [SECRET])
    assert info.value.reason in ("bad_signature", "bad_token")


def test_redirect_target_swapped_for_another_is_refused() -> None:
    """The classic open-redirect attack: keep the MAC, change the target."""
    good = el.sign(LINK, SECRET)
    evil = el.sign(el.EmailLink("cmp-42", "send-7", "cust-9", "https://evil.example/"), "other-key")
    forged = evil.partition(".")[0] + "." + good.partition(".")[2]
    with pytest.raises(ValidationError) as info:
        el.verify(forged, "c", [SECRET])
    assert info.value.reason == "bad_signature"


def test_wrong_key_and_wrong_purpose_are_refused() -> None:
    with pytest.raises(ValidationError):
        el.verify(el.sign(LINK, "another-key"), "c", [SECRET])
    open_token = el.sign(el.EmailLink("cmp-42", "send-7", "cust-9"), SECRET)
    with pytest.raises(ValidationError) as info:
        el.verify(open_token, "c", [SECRET])
    assert info.value.reason == "bad_signature"


@pytest.mark.parametrize("token", ["", "abc", "abc.", ".abc", "a.b.c", "!!!.???"])
def test_garbage_tokens_are_refused(token: str) -> None:
    with pytest.raises(ValidationError):
        el.verify(token, "o", [SECRET])


def test_rotated_key_still_verifies_old_links() -> None:
    old_token = el.sign(LINK, "old-key")
    assert el.verify(old_token, "c", ["new-key", "old-key"]) == LINK
    with pytest.raises(ValidationError):
        el.verify(old_token, "c", ["new-key"])


@pytest.mark.parametrize(
    "target", ["javascript:alert(1)", "/relative", "//evil.example/x", "data:text/html,x"]
)
def test_non_web_targets_cannot_be_signed(target: str) -> None:
    with pytest.raises(ValidationError) as info:
        el.sign(el.EmailLink("c", "s", "u", target), SECRET)
    assert info.value.reason == "bad_target"


CAMPAIGN_HTML = """<!doctype html>
<html><body>
<p>Hello! <a class="btn" href="https://shop.example/sale?a=1&amp;b=2" target="_blank">Sale</a></p>
<p><A HREF='http://shop.example/new'
   title="new">New in</A> · <a href="mailto:help@shop.example">mail us</a>
<a href="#top">top</a> <a data-webhouse-notrack href="https://shop.example/unsubscribe">leave</a></p>
</body></html>
"""


def test_rewrite_html_routes_web_links_through_signed_redirects() -> None:
    base = "https://t.shop.example"
    link = el.EmailLink("cmp-42", "send-7", "cust-9")
    out = el.rewrite_html(CAMPAIGN_HTML, base, link, SECRET)
    hrefs = [unescape(h) for h in re.findall(r'href="([^"]*)"', out, flags=re.I)]
    tracked = [h for h in hrefs if h.startswith(base + el.CLICK_PATH)]
    assert len(tracked) == 2
    targets = [el.verify(urlsplit(h).path.removeprefix(el.CLICK_PATH), "c", [SECRET]).url for h in tracked]
    assert targets == ["https://shop.example/sale?a=1&b=2", "http://shop.example/new"]
    # untouched: mailto, in-page anchor, opted-out link; other attributes kept
    assert 'href="mailto:help@shop.example"' in out
    assert 'href="#top"' in out
    assert 'href="https://shop.example/unsubscribe"' in out
    assert 'class="btn"' in out and 'target="_blank"' in out and 'title="new">New in</A>' in out
    # the open pixel sits right before </body> and verifies as an open of this recipient
    pixel = re.search(r'<img src="([^"]+)"[^>]*>\s*</body>', out)
    assert pixel is not None
    token = urlsplit(unescape(pixel.group(1))).path.removeprefix(el.OPEN_PATH).removesuffix(el.PIXEL_SUFFIX)
    assert el.verify(token, "o", [SECRET]) == link


def test_rewrite_html_without_body_appends_pixel() -> None:
    out = el.rewrite_html(
        '<a href="https://x.example/">x</a>', "https://t", el.EmailLink("c", "s", "u"), SECRET
    )
    assert out.startswith('<a href="https://t/e/c/')
    assert out.endswith('height:1px">')
