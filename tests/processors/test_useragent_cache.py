"""The user-agent parse cache: each distinct agent resolved once while it stays among the last N."""

from __future__ import annotations

from collections import Counter

import pytest
import ua_parser
from pydantic import ValidationError

from pipeline.settings import WorkerSettings
from processors.enrichment import Enricher
from processors.enrichment.useragent import UserAgentParser, classify

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.2 Mobile/15E148 Safari/604.1"
)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


class CountingResolver:
    """ua-parser's parse, counting the agents it was asked to resolve."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def __call__(self, ua: str) -> ua_parser.Result:
        self.calls[ua] += 1
        return ua_parser.parse(ua)


def test_a_repeated_agent_is_resolved_once_and_classified_as_without_cache() -> None:
    resolve = CountingResolver()
    parser = UserAgentParser(cache_size=10, resolve=resolve)
    results = [parser(ua) for ua in (CHROME, IPHONE, CHROME, CHROME, IPHONE)]
    assert resolve.calls == Counter({CHROME: 1, IPHONE: 1})
    assert results == [classify(ua) for ua in (CHROME, IPHONE, CHROME, CHROME, IPHONE)]
    assert parser.cache_info() == (3, 2, 2)


def test_the_least_recently_used_agent_is_evicted_at_the_configured_size() -> None:
    resolve = CountingResolver()
    parser = UserAgentParser(cache_size=2, resolve=resolve)
    for ua in (CHROME, IPHONE, CHROME, FIREFOX, CHROME, IPHONE):
        parser(ua)
    # FIREFOX pushed out IPHONE (CHROME was used more recently), so IPHONE is resolved again.
    assert resolve.calls == Counter({CHROME: 1, IPHONE: 2, FIREFOX: 1})
    assert parser.cache_info()[2] == 2


def test_size_zero_means_no_cache() -> None:
    resolve = CountingResolver()
    parser = UserAgentParser(cache_size=0, resolve=resolve)
    for _ in range(3):
        assert parser(CHROME) == classify(CHROME)
    assert resolve.calls == Counter({CHROME: 3})
    assert parser.cache_info() == (0, 0, 0)


def test_a_negative_size_is_refused() -> None:
    with pytest.raises(ValueError, match="cache_size"):
        UserAgentParser(cache_size=-1)
    with pytest.raises(ValidationError):
        WorkerSettings(user_agent_cache_size=-1)


def test_the_worker_setting_sizes_the_enrichers_cache() -> None:
    enricher = Enricher.from_settings(WorkerSettings(user_agent_cache_size=3))
    assert enricher.agents.cache_size == 3
    assert Enricher.from_settings(WorkerSettings()).agents.cache_size == 20_000
