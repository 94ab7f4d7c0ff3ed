"""User agent -> browser, OS, device class, bot flag.

Parsing is ua-parser's (the maintained uap-core regex set); what we add is the
device *class* the webhouse groups by (desktop, mobile, tablet, bot, other) and a
bot test that also catches the scripted clients uap-core does not call spiders.

Real traffic repeats a few thousand user agents, and an uncached parse runs hundreds of
regexes (about a millisecond), so ``UserAgentParser`` keeps an LRU cache of whole results
per string, sized by ``worker.user_agent_cache_size`` (ua-parser's own cache holds 2,000,
fewer than a shop's distinct agents). ``parse_user_agent`` is a shared parser with the
default size.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

import ua_parser

from pipeline.immutable import immutable

DESKTOP_OS = frozenset(
    {"Windows", "Mac OS X", "macOS", "Linux", "Ubuntu", "Fedora", "Debian", "Chrome OS", "FreeBSD"}
)
# Scripted clients and monitors that uap-core leaves as ordinary "Other" agents.
_BOT_PATTERN = re.compile(
    r"bot\b|bot/|crawl|spider|slurp|scrap|headless|phantomjs|python-requests|python-urllib|"
    r"aiohttp|httpx|curl/|wget/|go-http-client|okhttp|java/|libwww|httpclient|lighthouse|pingdom|"
    r"uptime|facebookexternalhit|embedly|validator",
    re.IGNORECASE,
)
_TABLET_FAMILIES = ("ipad", "tablet", "kindle", "nexus 7", "nexus 9", "nexus 10", "galaxy tab")
_MOBILE_FAMILIES = ("iphone", "ipod", "smartphone", "mobile", "pixel")


@immutable
class UserAgentInfo:
    browser_family: str | None
    browser_version: str | None
    os_family: str | None
    os_version: str | None
    device_class: str  # desktop | mobile | tablet | bot | other
    is_bot: bool
    bot_name: str | None


UNKNOWN = UserAgentInfo(None, None, None, None, "other", False, None)


def _version(*parts: str | None) -> str | None:
    taken = []
    for part in parts:
        if part is None:
            break
        taken.append(part)
    return ".".join(taken) or None


def _device_class(ua: str, device_family: str, os_family: str | None) -> str:
    family = device_family.lower()
    if any(word in family for word in _TABLET_FAMILIES):
        return "tablet"
    if os_family == "Android":
        # Android phones say "Mobile"; Android tablets do not.
        return "mobile" if "Mobile" in ua else "tablet"
    if any(word in family for word in _MOBILE_FAMILIES) or os_family in ("iOS", "Windows Phone", "KaiOS"):
        return "mobile"
    if family == "other" and os_family in DESKTOP_OS:
        return "desktop"
    if os_family in DESKTOP_OS:
        return "desktop"
    return "other"


DEFAULT_CACHE_SIZE = 20_000
Resolve = Callable[[str], ua_parser.Result]


def classify(ua: str | None, resolve: Resolve = ua_parser.parse) -> UserAgentInfo:
    """Classify one user agent string, uncached; never raises (an unparsable agent is 'other')."""
    if not ua or not ua.strip():
        return UNKNOWN
    result = resolve(ua)
    agent, os, device = result.user_agent, result.os, result.device
    browser = agent.family if agent is not None and agent.family != "Other" else None
    os_family = os.family if os is not None and os.family != "Other" else None
    device_family = device.family if device is not None else "Other"
    spider = device_family == "Spider"
    scripted = _BOT_PATTERN.search(ua) is not None
    is_bot = spider or scripted
    return UserAgentInfo(
        browser_family=browser,
        browser_version=_version(agent.major, agent.minor, agent.patch) if browser and agent else None,
        os_family=os_family,
        os_version=_version(os.major, os.minor, os.patch) if os_family and os else None,
        device_class="bot" if is_bot else _device_class(ua, device_family, os_family),
        is_bot=is_bot,
        bot_name=(browser or _bot_token(ua)) if is_bot else None,
    )


class UserAgentParser:
    """``classify`` behind an LRU cache of ``cache_size`` distinct agents (0: no cache of ours)."""

    def __init__(self, cache_size: int = DEFAULT_CACHE_SIZE, resolve: Resolve = ua_parser.parse) -> None:
        if cache_size < 0:
            raise ValueError(f"cache_size must be 0 or more, got {cache_size}")
        self.cache_size = cache_size
        self._resolve = resolve
        self._cached = lru_cache(maxsize=cache_size)(self._classify) if cache_size else None

    def _classify(self, ua: str | None) -> UserAgentInfo:
        return classify(ua, self._resolve)

    def __call__(self, ua: str | None) -> UserAgentInfo:
        if self._cached is None:
            return classify(ua, self._resolve)
        return self._cached(ua)

    def cache_info(self) -> tuple[int, int, int]:
        """(hits, misses, entries held) since creation; zeros without a cache."""
        if self._cached is None:
            return (0, 0, 0)
        info = self._cached.cache_info()
        return (info.hits, info.misses, info.currsize)


parse_user_agent = UserAgentParser()


def _bot_token(ua: str) -> str:
    """The product token of a scripted client: 'curl/8.5.0' -> 'curl'."""
    return ua.split("/", 1)[0].split(" ", 1)[0][:64] or "unknown"
