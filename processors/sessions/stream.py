"""Event-time sessionization of one device as pure functions over ``DeviceState``.

How it stays exact with out-of-order events: an accepted event waits in the state's buffer until
the watermark W passes it (``time < W``). Every event accepted later has ``time >= W``, so it
sorts after everything released: the released events are a final prefix of the device's sorted
events, and cutting that prefix left to right (the rules of ``SessionPolicy``) gives the same
visits as cutting the complete, sorted history. A late event that bridges two would-be visits
simply arrives before either is cut, so it merges them, as Kafka Streams session windows do, but
no provisional visit is ever published (``Session.merged_session_ids`` stays empty).

A visit closes when no future event can join it: when the next event has been released and
starts another visit, or when W reaches the visit's first time boundary (inactivity, max duration,
midnight). ``release_waiting`` releases everything now, keeping the open visit open (a quiet
partition); ``flush`` also closes it, as ``idle_sweep`` (an end of input).

Cost per event: a fingerprint of its id and a set lookup for duplicates, an append (in-order) or
bisect insert into the small buffer, and a constant amount of aggregate work per released event.
"""

from __future__ import annotations

from bisect import bisect_left, insort

from pipeline.errors import ProcessingError
from pipeline.fingerprint import id_fingerprint
from processors.sessions.events import SessionEvent, keep_ids, session_id_for
from processors.sessions.policy import CloseRule, SessionPolicy, from_ms
from processors.sessions.records import (
    Assignment,
    DuplicateEvent,
    LateEvent,
    Output,
    Session,
)
from processors.sessions.state import DeviceState, OpenSession


def _order(event: SessionEvent) -> tuple[int, str]:
    return (event.time_ms, event.event_id)


def add_event(
    state: DeviceState | None, event: SessionEvent, watermark_ms: int, policy: SessionPolicy
) -> tuple[DeviceState, list[Output]]:
    """Take one event of a device; ``watermark_ms`` is the partition watermark after this event.

    Returns the (same, mutated) state and the outputs in order: a ``DuplicateEvent`` or a
    ``LateEvent`` for the event itself, or the assignments and closed visits that the (possibly
    advanced) watermark releases.
    """
    if state is None:
        state = DeviceState(device_id=event.device_id)
    elif event.device_id != state.device_id:
        raise ProcessingError(
            "sessions", f"event {event.event_id} of device {event.device_id} given to {state.device_id}"
        )
    event_id = event.event_id
    seen = id_fingerprint(event_id)
    buffer = state.buffer
    if seen in state.known_seen or (buffer and _is_buffered(buffer, event)):
        return state, [DuplicateEvent(event_id)]
    floor = state.watermark_ms if state.watermark_ms > watermark_ms else watermark_ms
    _remember(state, seen, policy)
    if event.time_ms < floor:
        return state, [LateEvent(event, floor)]
    if buffer:
        last = buffer[-1]
        if last.time_ms > event.time_ms or (last.time_ms == event.time_ms and last.event_id > event_id):
            insort(buffer, event, key=_order)  # out of order: place it where it belongs
        else:
            buffer.append(event)
    else:
        buffer.append(event)
    return advance(state, watermark_ms, policy)


def advance(state: DeviceState, watermark_ms: int, policy: SessionPolicy) -> tuple[DeviceState, list[Output]]:
    """Apply a new watermark: release the events it passed, close the visits it ended."""
    if watermark_ms > state.watermark_ms:
        state.watermark_ms = watermark_ms
    else:
        watermark_ms = state.watermark_ms
    outputs: list[Output] = []
    buffer = state.buffer
    if buffer and buffer[0].time_ms < watermark_ms:
        count, size = 1, len(buffer)
        while count < size and buffer[count].time_ms < watermark_ms:
            count += 1
        released = buffer[:count]
        del buffer[:count]
        for event in released:
            _release(state, event, policy, outputs)
    current = state.current
    if current is not None and watermark_ms >= _boundary(current, policy):
        outputs.append(_close(current, state.device_id, current.boundary_rule))
        state.current = None
    return state, outputs


def release_waiting(state: DeviceState, policy: SessionPolicy) -> tuple[DeviceState, list[Output]]:
    """Release every waiting event into its visit now, leaving the open visit open (a quiet,
    caught-up partition: nothing else is on its way, so waiting out the allowed lateness only
    delays the rows). The device's own watermark moves just past the last released event: a
    straggler older than that is reported late, since its place has been published."""
    outputs: list[Output] = []
    released, state.buffer = state.buffer, []
    for event in released:
        _release(state, event, policy, outputs)
    if released:
        state.watermark_ms = max(state.watermark_ms, released[-1].time_ms + 1)
    return state, outputs


def flush(state: DeviceState, policy: SessionPolicy) -> tuple[DeviceState, list[Output]]:
    """Release every waiting event and close the open visit as ``idle_sweep`` (end of stream).

    Call ``advance`` with the partition watermark first, so visits the watermark has already ended
    keep their real closing rule. Afterwards the device's own watermark sits just past its last
    released event: a straggler for this device older than that is reported late, since its
    visit has already been published.
    """
    state, outputs = release_waiting(state, policy)
    if state.current is not None:
        outputs.append(_close(state.current, state.device_id, CloseRule.IDLE_SWEEP))
        state.current = None
    return state, outputs


def next_wakeup(state: DeviceState, policy: SessionPolicy) -> int | None:
    """The lowest watermark (ms) at which ``advance`` would output something; None if never."""
    buffer = state.buffer
    current = state.current
    if current is None:
        return buffer[0].time_ms + 1 if buffer else None
    boundary_ms = _boundary(current, policy)
    if buffer:
        release_ms = buffer[0].time_ms + 1
        return release_ms if release_ms < boundary_ms else boundary_ms
    return boundary_ms


def is_open(state: DeviceState, watermark_ms: int, policy: SessionPolicy) -> bool:
    """Could an event at the watermark still join this device's visit (or waiting events)?

    Exact even when ``advance`` has not yet been applied for ``watermark_ms``.
    """
    if state.buffer:
        return True
    current = state.current
    return current is not None and watermark_ms < _boundary(current, policy)


def last_event_ms(state: DeviceState) -> int | None:
    """The time of the device's latest accepted event still in its state (waiting or in the visit)."""
    latest = state.current.last_ms if state.current is not None else None
    if state.buffer and (latest is None or state.buffer[-1].time_ms > latest):
        latest = state.buffer[-1].time_ms
    return latest


def seen_before(state: DeviceState, event_id: str, policy: SessionPolicy) -> bool:
    """The duplicate check of an event that joins no visit (a crawler's, a CRM call's): True when
    its id is among the key's remembered ids (a client's retry), else it is remembered now."""
    seen = id_fingerprint(event_id)
    if seen in state.known_seen:
        return True
    _remember(state, seen, policy)
    return False


def _remember(state: DeviceState, seen: str, policy: SessionPolicy) -> None:
    """Keep the fingerprints of the last ``policy.dedup_memory`` ids taken (waiting events are
    also found in the buffer, by their ids)."""
    recent = state.recent_seen
    known = state.known_seen
    known.add(seen)
    recent.append(seen)
    while len(recent) > policy.dedup_memory:
        known.discard(recent.popleft())


def _is_buffered(buffer: list[SessionEvent], event: SessionEvent) -> bool:
    """A redelivered event has the same time and id as its waiting twin: one bisect finds it."""
    key = _order(event)
    index = bisect_left(buffer, key, key=_order)
    return index < len(buffer) and _order(buffer[index]) == key


def _boundary(current: OpenSession, policy: SessionPolicy) -> int:
    """The first instant no event can join ``current`` any more (its rule in ``boundary_rule``)."""
    boundary_ms = current.boundary_ms
    if boundary_ms is not None:
        return boundary_ms
    boundary_ms = current.last_ms + policy.gap_ms + 1
    rule = CloseRule.INACTIVITY
    cap_ms = current.start_ms + policy.max_duration_ms
    if cap_ms < boundary_ms:
        boundary_ms, rule = cap_ms, CloseRule.MAX_DURATION
    midnight_ms = current.midnight_ms
    if midnight_ms is not None and midnight_ms < boundary_ms:
        boundary_ms, rule = midnight_ms, CloseRule.MIDNIGHT
    current.boundary_ms = boundary_ms
    current.boundary_rule = rule
    return boundary_ms


def _release(state: DeviceState, event: SessionEvent, policy: SessionPolicy, outputs: list[Output]) -> None:
    """Cut or extend the open visit with the next event in order, and assign the event."""
    current = state.current
    if current is not None:
        if event.time_ms < _boundary(current, policy):
            if not policy.split_on_campaign_change:
                _extend(state, current, event)
                outputs.append(Assignment(event, current.session_id))
                return
            campaign = event.campaign
            if campaign is None or campaign == current.campaign:
                _extend(state, current, event)
                outputs.append(Assignment(event, current.session_id))
                return
            rule = CloseRule.CAMPAIGN_CHANGE
        else:
            rule = current.boundary_rule
        outputs.append(_close(current, state.device_id, rule))
    current = OpenSession(
        session_id=session_id_for(state.device_id, event.time_ms, event.event_id),
        start_ms=event.time_ms,
        last_ms=event.time_ms,
        first_event_id=event.event_id,
        last_event_id=event.event_id,
        midnight_ms=policy.next_midnight_ms(event.time_ms) if policy.split_at_midnight else None,
        customer_id=state.last_customer_id,
        referrer_class=event.referrer_class,
        referrer_host=event.referrer_host,
    )
    state.current = current
    _extend(state, current, event)
    outputs.append(Assignment(event, current.session_id))


def _extend(state: DeviceState, current: OpenSession, event: SessionEvent) -> None:
    current.last_ms = event.time_ms
    current.last_event_id = event.event_id
    current.boundary_ms = None  # the inactivity boundary moved
    current.event_count += 1
    if event.is_page_view:
        current.page_view_count += 1
        if event.page is not None:
            current.exit_page = event.page
            if current.landing_page is None:
                current.landing_page = event.page
    if event.customer_id is not None:
        current.customer_id = state.last_customer_id = event.customer_id
    if current.campaign is None:
        campaign = event.campaign
        if campaign is not None:
            current.campaign = campaign
            current.utm_term = event.utm_term
            current.utm_content = event.utm_content
    if current.channel is None:
        current.channel = event.channel
    if current.device_class is None:
        current.device_class = event.device_class
    if current.browser_family is None:
        current.browser_family = event.browser_family
    if current.os_family is None:
        current.os_family = event.os_family
    if event.products_viewed:
        keep_ids(current.products_viewed, event.products_viewed)
    if event.products_added:
        keep_ids(current.products_added, event.products_added)
    if event.products_bought:
        keep_ids(current.products_bought, event.products_bought)
    if event.revenue is not None:
        order_id = event.order_id
        if order_id is None:
            current.revenue += event.revenue
        elif order_id not in current.order_ids:  # a client retry of the same order counts once
            keep_ids(current.order_ids, (order_id,))
            current.revenue += event.revenue
    if event.is_order_completed:
        current.converted = True
    if event.imported:
        current.imported = True


def _close(current: OpenSession, device_id: str, rule: CloseRule) -> Session:
    campaign = current.campaign or (None, None, None)
    return Session(
        session_id=current.session_id,
        anonymous_id=device_id,
        customer_id=current.customer_id,
        start=from_ms(current.start_ms),
        end=from_ms(current.last_ms),
        duration_ms=current.last_ms - current.start_ms,
        event_count=current.event_count,
        page_view_count=current.page_view_count,
        landing_page=current.landing_page,
        exit_page=current.exit_page,
        referrer_class=current.referrer_class,
        referrer_host=current.referrer_host,
        utm_source=campaign[0],
        utm_medium=campaign[1],
        utm_campaign=campaign[2],
        utm_term=current.utm_term,
        utm_content=current.utm_content,
        channel=current.channel,
        device_class=current.device_class,
        browser_family=current.browser_family,
        os_family=current.os_family,
        first_event_id=current.first_event_id,
        last_event_id=current.last_event_id,
        products_viewed=tuple(current.products_viewed),
        products_added=tuple(current.products_added),
        products_bought=tuple(current.products_bought),
        revenue=current.revenue,
        converted=current.converted,
        bounce=current.event_count == 1 and current.page_view_count == 1,
        closed_by=rule,
        imported=current.imported,
    )
