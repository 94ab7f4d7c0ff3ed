"""One simulated visit is one server-side session: the processors' own reference sessionizer,
run over the stream with the default policy, cuts exactly the visits the simulator meant."""

from __future__ import annotations

from datetime import datetime

from pipeline.settings import SessionPolicySettings
from processors.sessions import SessionEvent, SessionPolicy, sessionize_batch
from tools.simulate import Simulation
from tools.simulate.messages import from_ms, to_ms


def _session_events(sim: Simulation) -> list[SessionEvent]:
    crawlers = {b.anonymous_id for b in sim.truth.bots}
    out = []
    for event in sim.events:
        body = event.body
        anonymous_id = body.get("anonymousId")
        if event.malformed or not anonymous_id or anonymous_id in crawlers:
            continue
        campaign = body.get("context", {}).get("campaign") or {}
        props = body.get("properties") or {}
        name = body.get("event")
        added = (props["product_id"],) if name == "Product Added" else ()
        bought = tuple(p["product_id"] for p in props["products"]) if name == "Order Completed" else ()
        out.append(
            SessionEvent(
                event_id=body["messageId"],
                device_id=anonymous_id,
                event_time=from_ms(event.ts_ms),
                customer_id=body.get("userId"),
                call_type=body["type"],
                event_name=body.get("event"),
                is_page_view=body["type"] in ("page", "screen"),
                utm_source=campaign.get("source"),
                utm_medium=campaign.get("medium"),
                utm_campaign=campaign.get("name"),
                channel=body.get("channel"),
                products_added=added,
                products_bought=bought,
                revenue=props.get("revenue") if name == "Order Completed" else None,
            )
        )
    return out


def _ms(moment: datetime) -> int:
    return to_ms(moment)


def test_the_reference_sessionizer_finds_exactly_the_simulated_visits(small_sim: Simulation) -> None:
    policy = SessionPolicy.from_settings(SessionPolicySettings())
    result = sessionize_batch(_session_events(small_sim), policy, final_watermark_ms=small_sim.truth.now_ms)
    assert len(result.sessions) == sum(small_sim.truth.visits_by_source.values())
    carts = {
        (s.anonymous_id, _ms(s.start), _ms(s.end))
        for s in result.sessions
        if s.products_added and not s.converted
    }
    assert carts == {
        (c.anonymous_id, c.visit_start_ms, c.visit_end_ms) for c in small_sim.truth.abandoned_carts
    }
    revenue = sorted(round(s.revenue, 2) for s in result.sessions if s.converted)
    assert revenue == sorted(o.revenue_cents / 100 for o in small_sim.truth.orders)
