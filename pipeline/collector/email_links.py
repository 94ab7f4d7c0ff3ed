"""Signed e-mail tracking links: the open pixel and the click redirect.

A tracking URL carries who received which send of which campaign and, for a click,
where the link goes. Anyone can read a URL in an e-mail, so the parameters are
signed (HMAC-SHA256, truncated to 128 bits) and the collector refuses a token whose
signature does not check out: nobody can forge an open for another customer, and
the redirect cannot be turned into an open redirect to a site of the attacker's
choosing. The purpose ("o" open, "c" click) is part of the signed message, so an
open token cannot be replayed as a click.

Token = base64url(JSON array of the fields) + "." + base64url(MAC), both without
padding: compact, URL-safe, no server-side state. Several keys may verify (the
first signs), so a key can be rotated without breaking links already sent.

``rewrite_html`` turns a campaign's HTML into a per-recipient copy whose http(s)
links go through the click redirect and which carries the open pixel.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from html import escape
from html.parser import HTMLParser
from typing import Literal
from urllib.parse import urlsplit

from pipeline.errors import ValidationError
from pipeline.immutable import immutable

Purpose = Literal["o", "c"]
MAC_BYTES = 16
OPEN_PATH = "/e/o/"
CLICK_PATH = "/e/c/"
PIXEL_SUFFIX = ".gif"


@immutable
class EmailLink:
    """What a tracking link says: one recipient of one send of a campaign."""

    campaign_id: str
    send_id: str
    customer_id: str
    url: str | None = None  # the target of a click link; None for the open pixel


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValidationError("bad_token", "token is not base64url") from exc


def _mac(secret: str, purpose: Purpose, body: str) -> bytes:
    message = f"{purpose}.{body}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()[:MAC_BYTES]


def check_target(url: str) -> str:
    """Only absolute http(s) URLs may be click targets (no javascript:, data:, relative...)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationError("bad_target", f"click target must be an absolute http(s) URL: {url[:200]!r}")
    return url


def sign(link: EmailLink, secret: str) -> str:
    """The token of a link: signed with ``secret`` for the purpose the link has."""
    if not secret:
        raise ValidationError("no_secret", "an e-mail link secret is required")
    purpose: Purpose = "c" if link.url is not None else "o"
    fields = [link.campaign_id, link.send_id, link.customer_id]
    if link.url is not None:
        fields.append(check_target(link.url))
    body = _b64(json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode())
    return f"{body}.{_b64(_mac(secret, purpose, body))}"


def verify(token: str, purpose: Purpose, secrets: Sequence[str]) -> EmailLink:
    """The link a token stands for, if one of ``secrets`` signed it for ``purpose``.

    Raises ValidationError (reason ``bad_signature``, ``bad_token`` or ``bad_target``).
    """
    body, dot, mac_text = token.partition(".")
    if not dot or not body or not mac_text:
        raise ValidationError("bad_token", "token has no signature part")
    given = _unb64(mac_text)
    if not any(hmac.compare_digest(given, _mac(s, purpose, body)) for s in secrets if s):
        raise ValidationError("bad_signature", "tracking link signature does not match")
    try:
        fields = json.loads(_unb64(body))
    except ValueError as exc:
        raise ValidationError("bad_token", "token body is not JSON") from exc
    expected = 4 if purpose == "c" else 3
    if not isinstance(fields, list) or len(fields) != expected or not all(isinstance(f, str) for f in fields):
        raise ValidationError("bad_token", "token body has the wrong shape")
    url = check_target(fields[3]) if purpose == "c" else None
    return EmailLink(fields[0], fields[1], fields[2], url)


def open_url(base_url: str, link: EmailLink, secret: str) -> str:
    return f"{base_url.rstrip('/')}{OPEN_PATH}{sign(link, secret)}{PIXEL_SUFFIX}"


def click_url(base_url: str, link: EmailLink, secret: str) -> str:
    return f"{base_url.rstrip('/')}{CLICK_PATH}{sign(link, secret)}"


class _AnchorFinder(HTMLParser):
    """Records where each <a href="http..."> start tag is, so only those bytes are rewritten."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[int, int, str, str]] = []  # line, column, tag text, href

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "a":
            return
        values = dict(attrs)
        href = (values.get("href") or "").strip()
        if "data-webhouse-notrack" in values or urlsplit(href).scheme not in ("http", "https"):
            return
        text = self.get_starttag_text()
        if text is not None:
            line, column = self.getpos()
            self.anchors.append((line, column, text, href))


def _href_span(tag_text: str) -> tuple[int, int]:
    """Start and end of the ``href=...`` attribute inside a start tag."""
    lower = tag_text.lower()
    i = 0
    while (i := lower.find("href", i)) >= 0:
        j = i + 4
        while j < len(lower) and lower[j].isspace():
            j += 1
        if lower[i - 1].isspace() and j < len(lower) and lower[j] == "=":
            j += 1
            while j < len(lower) and lower[j].isspace():
                j += 1
            if j < len(tag_text) and tag_text[j] in ("'", '"'):
                return i, tag_text.index(tag_text[j], j + 1) + 1
            end = j
            while end < len(tag_text) and not tag_text[end].isspace() and tag_text[end] not in "/>":
                end += 1
            return i, end
        i += 4
    raise ValidationError("bad_html", f"no href in {tag_text[:80]!r}")


def _replace_href(tag_text: str, new_href: str) -> str:
    """The start tag with its href value replaced, other attributes kept byte for byte."""
    start, end = _href_span(tag_text)
    return f'{tag_text[:start]}href="{escape(new_href, quote=True)}"{tag_text[end:]}'


def rewrite_html(html: str, base_url: str, link: EmailLink, secret: str) -> str:
    """Per-recipient HTML: http(s) links through the signed click redirect, plus the open pixel.

    Links marked ``data-webhouse-notrack`` and non-web links (mailto:, tel:, #anchors)
    stay as they are. The pixel goes just before ``</body>``, or at the end.
    """
    finder = _AnchorFinder()
    finder.feed(html)
    finder.close()
    line_starts = [0]
    for i, ch in enumerate(html):
        if ch == "\n":
            line_starts.append(i + 1)
    pieces: list[str] = []
    cursor = 0
    for line, column, tag_text, href in finder.anchors:
        start = line_starts[line - 1] + column
        if html[start : start + len(tag_text)] != tag_text:  # the parser's view and ours disagree
            raise ValidationError("bad_html", f"cannot locate {tag_text[:80]!r} in the HTML")
        target = EmailLink(link.campaign_id, link.send_id, link.customer_id, href)
        pieces.append(html[cursor:start])
        pieces.append(_replace_href(tag_text, click_url(base_url, target, secret)))
        cursor = start + len(tag_text)
    pieces.append(html[cursor:])
    out = "".join(pieces)
    pixel_link = EmailLink(link.campaign_id, link.send_id, link.customer_id)
    pixel = (
        f'<img src="{escape(open_url(base_url, pixel_link, secret), quote=True)}" width="1" height="1" '
        'alt="" style="display:block;border:0;width:1px;height:1px">'
    )
    closing = out.lower().rfind("</body>")
    return out[:closing] + pixel + out[closing:] if closing >= 0 else out + pixel
