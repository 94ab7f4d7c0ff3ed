"""What the user-agent LRU cache saves: the enrichment's agent parse with and without it.

    .venv/bin/python bench/useragent_cache.py --events 100000 --rounds 3

The agents of the benches' workload (``workload``: thousands of distinct agents with a long
tail, in event order) go through, in interleaved rounds, each starting cold:

- ``lru``: ``UserAgentParser`` as the worker runs it (our LRU of ``--size`` agents, in front
  of ua-parser's default parser and its own 2,000-entry cache);
- ``no-lru``: the same classification without our cache (ua-parser's cache only);
- ``uncached``: no cache at all (every agent resolved by ua-parser's matcher: its native one,
  installed with the ``regex`` extra, else its pure-Python regexes at about a millisecond
  each), on the first ``--uncached-sample`` agents only.

Reports CPU microseconds per parse (min and median over the rounds) and the hit rate.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import ua_parser
import workload

from processors.enrichment.useragent import DEFAULT_CACHE_SIZE, UserAgentParser, classify


def fresh_default_resolver() -> Callable[[str], ua_parser.Result]:
    """ua-parser's default stack (its resolver behind its own cache), with an empty cache."""
    parser = ua_parser.Parser.from_matchers(ua_parser.load_builtins())
    return parser.parse


def no_cache_resolver() -> Callable[[str], ua_parser.Result]:
    """The matcher ua-parser's default stack uses, without a cache: its native one
    (``ua_parser.regex``, from the ``regex`` extra) when installed, else the pure-Python one."""
    matchers = ua_parser.load_builtins()
    if importlib.util.find_spec("ua_parser_rs") is not None:
        from ua_parser.regex import Resolver

        return ua_parser.Parser(Resolver(matchers)).parse
    return ua_parser.Parser(ua_parser.BasicResolver(matchers)).parse


def timed(parse: Callable[[str], object], agents: Sequence[str]) -> float:
    """CPU microseconds per parse over the whole sequence."""
    started = time.process_time()
    for agent in agents:
        parse(agent)
    return (time.process_time() - started) / len(agents) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=DEFAULT_CACHE_SIZE, help="our LRU's size")
    parser.add_argument("--uncached-sample", type=int, default=2_000)
    args = parser.parse_args()

    agents = workload.user_agents(workload.load(args.events))
    print(f"{len(agents)} parses, {len(set(agents))} distinct agents", file=sys.stderr)
    results: dict[str, list[float]] = {"lru": [], "no-lru": [], "uncached": []}
    hit_rate = 0.0
    for r in range(args.rounds):
        order = list(results)[r % 3 :] + list(results)[: r % 3]
        for name in order:
            if name == "lru":
                lru = UserAgentParser(args.size, fresh_default_resolver())
                results[name].append(timed(lru, agents))
                hits, misses, _ = lru.cache_info()
                hit_rate = hits / (hits + misses)
            elif name == "no-lru":
                resolve = fresh_default_resolver()

                def default_stack(ua: str, resolve: Callable[[str], ua_parser.Result] = resolve) -> object:
                    return classify(ua, resolve)

                results[name].append(timed(default_stack, agents))
            else:
                resolve = no_cache_resolver()
                sample = agents[: args.uncached_sample]

                def uncached(ua: str, resolve: Callable[[str], ua_parser.Result] = resolve) -> object:
                    return classify(ua, resolve)

                results[name].append(timed(uncached, sample))
            print(f"  round {r + 1}: {name:8s} {results[name][-1]:8.1f} us/parse", file=sys.stderr)
    print(
        f"user-agent parse, {len(agents)} events, {len(set(agents))} distinct agents, our LRU of {args.size}"
    )
    print("| parse | CPU us/parse median (min) |")
    print("|---|---|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):,.1f} ({min(values):,.1f}) |")
    print(f"our LRU's hit rate: {hit_rate:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
