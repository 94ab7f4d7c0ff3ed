"""Page URL and referrer: host/path/query without tracking noise, UTM, referrer class.

Tracking parameters (utm_*, click ids) make every landing URL unique and carry no
page identity, so they are cut from the stored query; the UTM values among them
are kept as the campaign. The referrer is classed the way web analytics does
(direct, internal, search, social, email, other) from the referring host alone,
with a small table of well-known hosts: good enough for grouping, and a table is
easy to extend.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit

from pipeline.immutable import immutable

UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
CLICK_IDS = frozenset(
    {
        "gclid", "gclsrc", "dclid", "gbraid", "wbraid", "fbclid", "msclkid", "yclid", "twclid",
        "ttclid", "li_fat_id", "igshid", "mc_cid", "mc_eid", "_ga", "_gl", "_hsenc", "_hsmi",
        "mkt_tok", "vero_id", "oly_anon_id", "oly_enc_id", "rb_clickid", "s_cid", "epik", "irclickid",
    }
)  # fmt: skip

# Second-level labels (the name left of the public suffix) of well-known referrers.
SEARCH = frozenset(
    {
        "google", "bing", "duckduckgo", "baidu", "yandex", "ecosia", "naver", "qwant", "startpage",
        "seznam", "sogou", "ask", "brave", "aol", "daum", "so", "yahoo", "search",
    }
)  # fmt: skip
SOCIAL = frozenset(
    {
        "facebook", "fb", "instagram", "twitter", "x", "t", "linkedin", "lnkd", "pinterest", "reddit",
        "tiktok", "youtube", "youtu", "snapchat", "tumblr", "vk", "weibo", "xing", "threads",
        "mastodon", "bsky", "discord", "telegram", "whatsapp", "quora", "line",
    }
)  # fmt: skip
# Webmail hosts; matched on the full host because their parents are search or portals too.
EMAIL_HOSTS = frozenset(
    {
        "mail.google.com", "outlook.live.com", "outlook.office.com", "outlook.office365.com",
        "mail.yahoo.com", "mail.aol.com", "mail.proton.me", "mail.yandex.ru", "mail.zoho.com",
        "webmail.gmx.net", "navigator.gmx.net", "web.de", "email.t-online.de", "icloud.com",
    }
)  # fmt: skip
EMAIL_MEDIA = frozenset({"email", "e-mail", "e_mail", "newsletter", "mail"})
# Second-level domains under which names are registered (example.co.uk).
_COMPOUND_SUFFIX = frozenset({"co", "com", "org", "net", "ac", "gov", "edu", "ne", "or"})


@immutable
class SplitUrl:
    host: str | None
    path: str | None
    query: str | None  # without tracking parameters; None when nothing is left
    utm: dict[str, str]  # utm_* found in the query


@lru_cache(maxsize=50_000)
def split_url(url: str | None) -> SplitUrl:
    """Split a page URL; a malformed URL yields what could be read, never an error."""
    if not url:
        return SplitUrl(None, None, None, {})
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        return SplitUrl(None, None, None, {})
    kept: list[tuple[str, str]] = []
    utm: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        lowered = key.lower()
        if lowered in UTM_KEYS:
            if value:
                utm[lowered] = value
        elif not lowered.startswith("utm_") and lowered not in CLICK_IDS:
            kept.append((key, value))
    return SplitUrl(
        host=host.lower().rstrip(".") if host else None,
        path=parts.path or ("/" if host else None),
        query=urlencode(kept) if kept else None,
        utm=utm,
    )


def site_label(host: str) -> str:
    """The registrable name's label: www.google.co.uk -> google, l.facebook.com -> facebook."""
    labels = host.split(".")
    if len(labels) >= 3 and labels[-2] in _COMPOUND_SUFFIX and len(labels[-1]) == 2:
        return labels[-3]
    return labels[-2] if len(labels) >= 2 else labels[0]


def _bare(host: str) -> str:
    return host[4:] if host.startswith("www.") else host


def _same_site(a: str, b: str) -> bool:
    return _bare(a) == _bare(b)


def classify_referrer(
    referrer: str | None,
    page_host: str | None,
    utm_medium: str | None = None,
    internal_domains: frozenset[str] = frozenset(),
) -> tuple[str, str | None]:
    """(class, referring host). Classes: direct, internal, search, social, email, other.

    Internal means the same host as the page (``www.`` ignored) or a host in
    ``internal_domains`` (or a subdomain of one). A campaign tagged as e-mail with
    no outside referrer counts as e-mail: webmail clients usually strip the referrer.
    """
    host = split_url(referrer).host if referrer else None
    if host is None:
        return ("email" if (utm_medium or "").lower() in EMAIL_MEDIA else "direct"), None
    if page_host and _same_site(host, page_host):
        return "internal", host
    if any(host == d or host.endswith("." + d) for d in internal_domains):
        return "internal", host
    if host in EMAIL_HOSTS or host.startswith(("mail.", "webmail.")):
        return "email", host
    label = site_label(host)
    if label in SEARCH or host.startswith("search."):
        return "search", host
    if label in SOCIAL:
        return "social", host
    if (utm_medium or "").lower() in EMAIL_MEDIA:
        return "email", host
    return "other", host
