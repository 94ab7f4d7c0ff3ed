"""What the simulated clients look like on the wire: user agents, app and device contexts, crawlers.

Strings are the shapes real browsers, Segment's mobile libraries and well-known crawlers send,
so the processors' user-agent parser and bot detection see believable input.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any

WEB_LIBRARY = {"name": "analytics.js", "version": "next-1.72.0"}
IOS_LIBRARY = {"name": "analytics-swift", "version": "1.6.2"}
ANDROID_LIBRARY = {"name": "analytics-kotlin", "version": "1.17.0"}
ESP_LIBRARY = {"name": "webhouse-esp-bridge", "version": "1.0.0"}
APP = {"name": "Example Shop", "namespace": "com.example.shop"}
APP_VERSIONS = (("4.11.2", "4112"), ("4.12.0", "4120"), ("4.12.1", "4121"))

# (weight, user agent, screen width, height, density)
DESKTOP_UAS: tuple[tuple[float, str, int, int, float], ...] = (
    (
        0.38,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
        1920,
        1080,
        1.0,
    ),
    (
        0.14,
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
        1512,
        982,
        2.0,
    ),
    (
        0.14,
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/18.1 Safari/605.1.15",
        1440,
        900,
        2.0,
    ),
    (
        0.12,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
        1920,
        1080,
        1.25,
    ),
    (
        0.12,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
        1366,
        768,
        1.0,
    ),
    (0.04, "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", 2560, 1440, 1.0),
)
MOBILE_UAS: tuple[tuple[float, str, int, int, float], ...] = (
    (
        0.40,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/18.1 Mobile/15E148 Safari/604.1",
        393,
        852,
        3.0,
    ),
    (
        0.30,
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.6778.39 Mobile Safari/537.36",
        412,
        915,
        2.625,
    ),
    (
        0.20,
        "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
        384,
        832,
        3.0,
    ),
    (
        0.10,
        "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.6 Mobile/15E148 Safari/604.1",
        820,
        1180,
        2.0,
    ),
)
# (weight, os name, os version, manufacturer, model, screen w, h, density)
APP_DEVICES: tuple[tuple[float, str, str, str, str, int, int, float], ...] = (
    (0.30, "iOS", "18.1", "Apple", "iPhone15,4", 393, 852, 3.0),
    (0.20, "iOS", "17.6.1", "Apple", "iPhone14,7", 390, 844, 3.0),
    (0.25, "Android", "14", "Google", "Pixel 8", 412, 915, 2.625),
    (0.25, "Android", "14", "samsung", "SM-S921B", 384, 832, 3.0),
)
# (name, user agent, ip prefix): crawlers that run the page's JavaScript, so the tag fires.
CRAWLERS: tuple[tuple[str, str, str], ...] = (
    (
        "Googlebot",
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like "
        "Gecko) Chrome/131.0.6778.69 Mobile Safari/537.36 (compatible; Googlebot/2.1; "
        "+http://www.google.com/bot.html)",
        "66.249.66",
    ),
    ("bingbot", "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "157.55.39"),
    ("AhrefsBot", "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", "54.36.148"),
    (
        "SemrushBot",
        "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
        "185.191.171",
    ),
    ("YandexBot", "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)", "5.255.253"),
    (
        "HeadlessChrome",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/131.0.0.0 Safari/537.36",
        "34.118.20",
    ),
)


@dataclass(frozen=True, slots=True)
class Device:
    """One browser profile or app install: its anonymous id persists across visits."""

    kind: str  # desktop | mobile | app
    anonymous_id: str
    user_agent: str
    ip: str
    screen: dict[str, Any]
    app: dict[str, Any] | None = None
    device: dict[str, Any] | None = None
    os: dict[str, Any] | None = None

    @property
    def channel(self) -> str:
        return "app" if self.kind == "app" else "web"

    @property
    def library(self) -> dict[str, str]:
        if self.kind != "app":
            return WEB_LIBRARY
        return IOS_LIBRARY if (self.os or {}).get("name") == "iOS" else ANDROID_LIBRARY


def new_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _weighted(rng: random.Random, table: tuple[tuple[Any, ...], ...]) -> tuple[Any, ...]:
    return rng.choices(table, weights=[row[0] for row in table])[0]


def public_ip(rng: random.Random) -> str:
    # Consumer broadband ranges in Europe-ish blocks; never private or documentation ranges.
    first = rng.choice(
        (
            31,
            37,
            46,
            62,
            77,
            78,
            79,
            80,
            81,
            82,
            83,
            84,
            85,
            86,
            87,
            88,
            89,
            90,
            91,
            92,
            93,
            94,
            95,
            176,
            178,
            188,
            212,
            213,
            217,
        )
    )
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def make_device(rng: random.Random, kind: str) -> Device:
    if kind == "app":
        _, os_name, os_version, maker, model, width, height, density = _weighted(rng, APP_DEVICES)
        version, build = rng.choice(APP_VERSIONS)
        if os_name == "iOS":
            ua = f"ExampleShop/{version} (iPhone; iOS {os_version}; Scale/{density:.2f})"
        else:
            ua = f"Dalvik/2.1.0 (Linux; U; Android {os_version}; {model} Build/AP2A.240905.003)"
        device_id = new_uuid(rng)
        return Device(
            kind="app",
            anonymous_id=new_uuid(rng),
            user_agent=ua,
            ip=public_ip(rng),
            screen={"width": width, "height": height, "density": density},
            app={**APP, "version": version, "build": build},
            device={"id": device_id, "manufacturer": maker, "model": model, "type": os_name.lower()},
            os={"name": os_name, "version": os_version},
        )
    _, ua, width, height, density = _weighted(rng, DESKTOP_UAS if kind == "desktop" else MOBILE_UAS)
    return Device(
        kind=kind,
        anonymous_id=new_uuid(rng),
        user_agent=ua,
        ip=public_ip(rng),
        screen={"width": width, "height": height, "density": density},
    )
