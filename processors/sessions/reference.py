"""The batch reference: the session policy applied directly to a complete, sorted history.

Written apart from the streaming code on purpose (it shares only ``SessionPolicy`` and
``session_id_for``): it sorts each device's events, cuts them by comparing each event with its
predecessor and its visit's first event (local dates compared directly for the midnight rule), and
builds each visit's record from its list of events. The property test holds the streaming
functions to it, ids included; it is also the way to rebuild sessions from landed events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import field
from itertools import pairwise

from pipeline.immutable import immutable
from processors.sessions.events import CampaignKey, SessionEvent, keep_ids, session_id_for
from processors.sessions.policy import CloseRule, SessionPolicy, from_ms
from processors.sessions.records import Session


@immutable
class BatchResult:
    sessions: list[Session] = field(default_factory=list)  # by device, then start
    assignments: dict[str, str] = field(default_factory=dict)  # event id -> session id


def sessionize_batch(
    events: Iterable[SessionEvent], policy: SessionPolicy, final_watermark_ms: int | None = None
) -> BatchResult:
    """Cut every device's events into visits.

    ``final_watermark_ms`` decides how the last visit of each device ended: by its first time
    boundary if the watermark reached it, else by the final sweep (``idle_sweep``). Duplicate ids
    are taken once (the first seen).
    """
    per_device: dict[str, dict[str, SessionEvent]] = {}
    for event in events:
        per_device.setdefault(event.device_id, {}).setdefault(event.event_id, event)
    result = BatchResult()
    for device_id in sorted(per_device):
        history = sorted(per_device[device_id].values(), key=lambda e: (e.time_ms, e.event_id))
        visits, rules = _cut(history, policy)
        last_visit = visits[-1]
        boundary_ms, boundary_rule = _first_boundary(last_visit, policy)
        if final_watermark_ms is not None and final_watermark_ms >= boundary_ms:
            rules.append(boundary_rule)
        else:
            rules.append(CloseRule.IDLE_SWEEP)
        known_customer: str | None = None
        for visit, rule in zip(visits, rules, strict=True):
            customers = [e.customer_id for e in visit if e.customer_id is not None]
            if customers:
                known_customer = customers[-1]
            session = _summarise(device_id, visit, rule, known_customer)
            result.sessions.append(session)
            for event in visit:
                result.assignments[event.event_id] = session.session_id
    return result


def _cut(
    history: list[SessionEvent], policy: SessionPolicy
) -> tuple[list[list[SessionEvent]], list[CloseRule]]:
    """Split a sorted history into visits; the rule that ended each visit but the last."""
    visits: list[list[SessionEvent]] = [[history[0]]]
    rules: list[CloseRule] = []
    visit_campaign: CampaignKey | None = history[0].campaign
    for previous, event in pairwise(history):
        visit = visits[-1]
        too_quiet = event.time_ms - previous.time_ms > policy.gap_ms
        too_long = event.time_ms - visit[0].time_ms >= policy.max_duration_ms
        new_day = policy.split_at_midnight and policy.local_date(event.time_ms) != policy.local_date(
            previous.time_ms
        )
        campaign = event.campaign
        new_campaign = policy.split_on_campaign_change and campaign is not None and campaign != visit_campaign
        if too_quiet or too_long or new_day:
            rules.append(_first_boundary(visit, policy)[1])
        elif new_campaign:
            rules.append(CloseRule.CAMPAIGN_CHANGE)
        else:
            visit.append(event)
            if visit_campaign is None:
                visit_campaign = campaign
            continue
        visits.append([event])
        visit_campaign = campaign
    return visits, rules


def _first_boundary(visit: list[SessionEvent], policy: SessionPolicy) -> tuple[int, CloseRule]:
    """The earliest instant no further event may join ``visit`` (ties: inactivity, max, midnight)."""
    last_ms = visit[-1].time_ms
    candidates = [
        (last_ms + policy.gap_ms + 1, 0, CloseRule.INACTIVITY),
        (visit[0].time_ms + policy.max_duration_ms, 1, CloseRule.MAX_DURATION),
    ]
    if policy.split_at_midnight:
        candidates.append((policy.next_midnight_ms(last_ms), 2, CloseRule.MIDNIGHT))
    instant, _, rule = min(candidates)
    return instant, rule


def _first(values: Iterable[str | None]) -> str | None:
    return next((value for value in values if value is not None), None)


_Utm = tuple[str | None, str | None, str | None, str | None, str | None]


def _utm(visit: list[SessionEvent]) -> _Utm:
    """UTM source, medium, campaign, term, content of the first event that carries a campaign."""
    source = next((e for e in visit if e.campaign is not None), None)
    if source is None:
        return None, None, None, None, None
    return source.utm_source, source.utm_medium, source.utm_campaign, source.utm_term, source.utm_content


def _landing_and_exit(page_views: list[SessionEvent]) -> tuple[str | None, str | None]:
    pages = [e.page for e in page_views if e.page is not None]
    return (pages[0], pages[-1]) if pages else (None, None)


def _in_order(groups: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
    """Every value once, in order of first appearance, as many as a visit lists (``keep_ids``)."""
    kept: dict[str, None] = {}
    for group in groups:
        keep_ids(kept, group)
    return tuple(kept)


def _revenue(visit: list[SessionEvent]) -> float:
    """Each order's revenue once: a second event with the same order id is a client retry (of
    the orders a visit remembers, ``keep_ids``)."""
    revenue = 0.0
    orders: dict[str, None] = {}
    for event in visit:
        if event.revenue is None or event.order_id in orders:
            continue
        if event.order_id is not None:
            keep_ids(orders, (event.order_id,))
        revenue += event.revenue
    return revenue


def _summarise(device_id: str, visit: list[SessionEvent], rule: CloseRule, customer: str | None) -> Session:
    first, last = visit[0], visit[-1]
    page_views = [e for e in visit if e.is_page_view]
    landing_page, exit_page = _landing_and_exit(page_views)
    utm_source, utm_medium, utm_campaign, utm_term, utm_content = _utm(visit)
    return Session(
        session_id=session_id_for(device_id, first.time_ms, first.event_id),
        anonymous_id=device_id,
        customer_id=customer,
        start=from_ms(first.time_ms),
        end=from_ms(last.time_ms),
        duration_ms=last.time_ms - first.time_ms,
        event_count=len(visit),
        page_view_count=len(page_views),
        landing_page=landing_page,
        exit_page=exit_page,
        referrer_class=first.referrer_class,
        referrer_host=first.referrer_host,
        utm_source=utm_source,
        utm_medium=utm_medium,
        utm_campaign=utm_campaign,
        utm_term=utm_term,
        utm_content=utm_content,
        channel=_first(e.channel for e in visit),
        device_class=_first(e.device_class for e in visit),
        browser_family=_first(e.browser_family for e in visit),
        os_family=_first(e.os_family for e in visit),
        first_event_id=first.event_id,
        last_event_id=last.event_id,
        products_viewed=_in_order(e.products_viewed for e in visit),
        products_added=_in_order(e.products_added for e in visit),
        products_bought=_in_order(e.products_bought for e in visit),
        revenue=_revenue(visit),
        converted=any(e.is_order_completed for e in visit),
        bounce=len(visit) == 1 and first.is_page_view,
        closed_by=rule,
        imported=any(e.imported for e in visit),
    )
