"""Determinism and the shape of the stream."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import datetime, timedelta

from tests.tools.simulate.conftest import NOW, small_config
from tools.simulate import Simulation, SimulationConfig, generate
from tools.simulate.messages import to_ms


def test_same_seed_gives_byte_identical_stream_and_truth(small_sim: Simulation) -> None:
    again = generate(small_config())
    assert "".join(again.jsonl()) == "".join(small_sim.jsonl())
    assert again.truth.to_json() == small_sim.truth.to_json()


def test_another_seed_gives_another_stream(small_sim: Simulation) -> None:
    other = generate(small_config(seed=8))
    assert "".join(other.jsonl()) != "".join(small_sim.jsonl())
    assert other.truth.orders != small_sim.truth.orders


def test_adding_customers_leaves_the_first_ones_unchanged() -> None:
    fewer, more = generate(small_config(customers=40)), generate(small_config(customers=60))
    first_40 = {e.body["messageId"] for e in fewer.events if e.key.startswith("c")}
    assert first_40 <= {e.body["messageId"] for e in more.events}


def test_stream_is_in_event_time_order_and_each_actor_in_its_own_order(small_sim: Simulation) -> None:
    times = [e.ts_ms for e in small_sim.events]
    assert times == sorted(times)
    seqs: dict[str, list[int]] = defaultdict(list)
    for event in small_sim.events:
        seqs[event.key].append(event.seq)
    assert all(s == sorted(s) for s in seqs.values())


def test_timestamps_lie_in_the_period_and_match_the_body(small_sim: Simulation) -> None:
    start = to_ms(NOW - timedelta(days=30 + 200))  # dormant customers' history reaches back 200 days
    for event in small_sim.events:
        assert start <= event.ts_ms <= to_ms(NOW)
        if event.malformed != "invalid_timestamp":
            parsed = datetime.fromisoformat(event.body["timestamp"].replace("Z", "+00:00"))
            assert to_ms(parsed) == event.ts_ms


def test_message_ids_are_unique_and_no_sent_at_is_generated(small_sim: Simulation) -> None:
    ids = [e.body["messageId"] for e in small_sim.events]
    assert len(ids) == len(set(ids))
    assert not any("sentAt" in e.body for e in small_sim.events)


def test_max_events_stops_at_whole_customers() -> None:
    capped = generate(small_config(customers=500, max_events=3000))
    assert 3000 <= len(capped.events) < 3000 + 500  # the last customer is kept whole
    assert capped.truth.customers_simulated < 500


def test_every_channel_and_the_main_event_types_occur(small_sim: Simulation) -> None:
    by_channel = small_sim.truth.events_by_channel
    assert set(by_channel) == {"web", "app", "email"}
    assert {
        "page",
        "Products Searched",
        "Product List Viewed",
        "Product Viewed",
        "Product Added",
        "Cart Viewed",
        "Checkout Started",
        "Order Completed",
        "Signed Up",
        "identify",
        "Consent Granted",
    } <= set(by_channel["web"])
    assert {"screen", "Application Opened", "Application Installed"} <= set(by_channel["app"])
    assert {"Email Sent", "Email Delivered", "Email Opened", "Email Link Clicked"} <= set(by_channel["email"])


def test_app_events_carry_app_device_and_os_context(small_sim: Simulation) -> None:
    app = [e.body for e in small_sim.events if e.channel == "app"]
    assert app
    for body in app:
        assert body["channel"] == "app"
        assert {"app", "device", "os", "library", "userAgent"} <= set(body["context"])
        assert body["context"]["library"]["name"] in ("analytics-swift", "analytics-kotlin")


def test_campaign_visits_carry_utm_tags_in_context_and_url(small_sim: Simulation) -> None:
    landings = [
        e.body
        for e in small_sim.events
        if e.body.get("context", {}).get("campaign", {}).get("medium") == "email"
    ]
    assert landings
    for body in landings:
        campaign = body["context"]["campaign"]
        assert f"utm_campaign={campaign['name']}" in body["context"]["page"]["url"]
        assert "utm_medium=email" in body["context"]["page"]["search"]


def test_dwell_times_within_a_visit_stay_under_the_session_gap(small_sim: Simulation) -> None:
    by_device: dict[str, list[int]] = defaultdict(list)
    for event in small_sim.events:
        anonymous_id = event.body.get("anonymousId")
        if anonymous_id and event.key.startswith("c"):
            by_device[anonymous_id].append(event.ts_ms)
    gaps = [b - a for times in by_device.values() for a, b in itertools.pairwise(times)]
    short = [g for g in gaps if g < 30 * 60_000]
    long = [g for g in gaps if g >= 30 * 60_000]
    # Within visits steps are seconds to minutes apart; between visits at least 35 minutes.
    assert short and long
    assert not [g for g in gaps if 21 * 60_000 < g < 35 * 60_000]


def test_bots_use_crawler_agents(small_sim: Simulation) -> None:
    bots = small_sim.truth.bots
    assert len(bots) == small_sim.config.bots
    ids = {b.anonymous_id for b in bots}
    agents = {e.body["context"]["userAgent"] for e in small_sim.events if e.body.get("anonymousId") in ids}
    assert all(("bot" in a.lower()) or ("Headless" in a) for a in agents)


def test_a_run_ending_at_another_time_reuses_no_ids() -> None:
    earlier = generate(SimulationConfig(seed=7, now=NOW - timedelta(hours=3), customers=40))
    later = generate(small_config(customers=40))
    assert not {e.body["messageId"] for e in earlier.events} & {e.body["messageId"] for e in later.events}
    assert not {o.order_id for o in earlier.truth.orders} & {o.order_id for o in later.truth.orders}
