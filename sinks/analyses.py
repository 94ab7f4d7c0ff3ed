"""The named analyses: documented SQL views and table macros over the stitched views.

Every analysis is plain DuckDB SQL an analyst can read and copy. Parameterised ones
are table macros (``rfm_at(as_of := ...)``) with a view of the same idea using the
defaults (``rfm``). "Now" and "as of" default to the latest event time in the data,
never the wall clock, so a replayed or historical data set reads the same as live.
Customers are the stitched customer ids (see ``sinks.duck``); money is the net of
order lines (refund lines are negative).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from pipeline import business
from pipeline.settings import WebhouseSettings


@dataclass(frozen=True, slots=True)
class Analysis:
    name: str  # the view (or macro) name, and the `webhouse report` name
    doc: str
    sql: str  # CREATE statements
    requires: tuple[str, ...] = ()  # tables it needs beyond events/orders/sessions/identity


def stitched_events_sql(source: str) -> str:
    """``source``'s events with retroactive stitching: an event keeps the customer known when it
    was processed; an anonymous event of a device linked later is attributed to that customer
    through ``identity_latest``; ``visitor_id`` is the customer, else the device."""
    return (
        "SELECT e.*, coalesce(e.customer_id, i.customer_id) AS stitched_customer_id, "
        "coalesce(e.customer_id, i.customer_id, e.anonymous_id) AS visitor_id "
        f"FROM {source} e LEFT JOIN identity_latest i ON i.anonymous_id = e.anonymous_id"
    )


def sessioned_sql(source: str, few_keys: bool = False) -> str:
    """``source``'s rows (events_stitched's columns, or enough of them) with ``session_id`` filled in.

    The worker sends an event on at arrival, with its session key and no session id; its visit is
    the closed session of that key whose (start, first event) .. (end, last event) holds the
    event's (time, id). One key's visits are disjoint in that order, so it is the last visit of the
    key starting at or before the event, if that visit has not ended before it: an ASOF join on
    (time, id) as a struct, sort-based (a plain join on the key compares every event of a device
    with every visit of it). ``few_keys``: ``source`` is filtered (one customer), so only its keys'
    visits are read; over a whole table that filter costs more than it saves. NULL while the visit
    is open, and for late events and events joining no visit (bots, CRM calls)."""
    only = " WHERE anonymous_id IN (SELECT visit_key_ FROM e)" if few_keys else ""
    return f"""WITH e AS (
  SELECT *, CASE WHEN session_id IS NULL AND NOT coalesce(enrichment_is_late, false)
                 THEN enrichment_session_key END AS visit_key_,
         struct_pack(t := event_time, id := message_id) AS visit_at_
  FROM {source}),
v AS (
  SELECT anonymous_id AS visit_key_, session_id AS visit_id_,
         struct_pack(t := "start"::TIMESTAMPTZ, id := first_event_id) AS visit_at_,
         struct_pack(t := "end"::TIMESTAMPTZ, id := last_event_id) AS last_at_
  FROM sessions_current{only})
SELECT e.* EXCLUDE (visit_key_, visit_at_)
       REPLACE (coalesce(e.session_id, CASE WHEN e.visit_at_ <= v.last_at_ THEN v.visit_id_ END)
                AS session_id)
FROM e ASOF LEFT JOIN v ON e.visit_key_ = v.visit_key_ AND e.visit_at_ >= v.visit_at_"""


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def funnel_event_filter(steps: Sequence[str]) -> str:
    """The condition selecting the funnel's events (bots never count)."""
    listed = ", ".join(_quote(s) for s in dict.fromkeys(steps))
    return f"type = 'track' AND event IN ({listed}) AND NOT coalesce(is_bot, false)"


def _funnel_events_sql(steps: Sequence[str], step_expr: str, source: str) -> str:
    """The funnel's events: visitor, day, time, campaign and ``step_expr`` (the step number(s))."""
    return (
        f"ev AS (SELECT visitor_id AS visitor, event_date AS day, event_time, campaign, {step_expr} "
        f"FROM {source} WHERE {funnel_event_filter(steps)})"
    )


_CAMPAIGN = (
    "coalesce(arg_min(campaign, event_time) FILTER (WHERE campaign IS NOT NULL), '(none)') AS campaign"
)


def _reached_by_fold(steps: Sequence[str], source: str) -> list[str]:
    """Any funnel, also one naming an event twice: each visitor-day's funnel events in time order
    (earlier step first on a tie), folded into the furthest step reached in order (greedy: each
    step at the earliest time at or after the previous one, which is when an ordered path exists
    at all). Sorting every visitor-day's list makes this the slow shape."""
    numbers = " ".join(
        f"WHEN {_quote(s)} THEN {[k for k, t in enumerate(steps, 1) if t == s]}" for s in dict.fromkeys(steps)
    )
    return [
        _funnel_events_sql(steps, f"CASE event {numbers} END AS nos", source),
        f"vd AS (SELECT visitor, day, {_CAMPAIGN}, "
        "list_reduce(list(nos ORDER BY event_time, nos[1]), "
        "lambda acc, x: CASE WHEN list_contains(x, acc + 1) THEN acc + 1 ELSE acc END, 0) AS reached "
        "FROM ev GROUP BY visitor, day)",
    ]


def _reached_distinct(steps: Sequence[str], source: str) -> list[str]:
    """The same fold when every step is a different event, in the shape DuckDB runs fast: one
    hash aggregation per visitor-day with no ordered aggregate. Step 1 is reached at the earliest
    step-1 event (t1); before it nothing else can advance the fold, so only the later steps' events
    at or after t1 are kept (a list only for the few visitor-days that have any, else NULL) and folded from 1.
    A NULL time sorts last, as in the general fold."""
    numbers = " ".join(f"WHEN {_quote(s)} THEN {k}" for k, s in enumerate(steps, 1))
    last = "coalesce(event_time, 'infinity'::TIMESTAMPTZ)"
    return [
        _funnel_events_sql(steps, f"CASE event {numbers} END AS s", source),
        f"vd0 AS (SELECT visitor, day, {_CAMPAIGN}, min({last}) FILTER (WHERE s = 1) AS t1, "
        f"list({{'t': {last}, 's': s}}) FILTER (WHERE s > 1) AS later "
        "FROM ev GROUP BY visitor, day)",
        "vd AS (SELECT visitor, day, campaign, CASE WHEN t1 IS NULL THEN 0 WHEN later IS NULL THEN 1 "
        "ELSE list_reduce(list_sort(list_filter(later, lambda x: x.t >= t1)), "
        "lambda acc, x: CASE WHEN x.s = acc + 1 THEN acc + 1 ELSE acc END, 1) END AS reached FROM vd0)",
    ]


def funnel_days_sql(steps: Sequence[str], source: str = "events_stitched", fold: bool = False) -> str:
    """The funnel's per-day counts: (day, campaign, reached, n) visitor-days of ``source`` (stitched
    events: ``visitor_id``, ``event_date``, ...) reaching step ``reached`` (0: none). A day's rows
    depend on that day's events only, which is what lets ``sinks.funnel_cache`` keep them per day."""
    if not steps:
        raise ValueError("a funnel needs at least one step")
    distinct = len(set(steps)) == len(steps)
    parts = _reached_distinct(steps, source) if distinct and not fold else _reached_by_fold(steps, source)
    return f"WITH {', '.join(parts)} SELECT day, campaign, reached, count(*) AS n FROM vd GROUP BY ALL"


def funnel_sql(
    steps: Sequence[str],
    name: str = "funnel",
    fold: bool = False,
    source: str = "events_stitched",
    cached: str | None = None,
) -> str:
    """Visitors per day and campaign reaching each step, in order (step k after step k-1, same day);
    ``<name>_overall`` and ``<name>_by_campaign`` sum those visitor-days over the days.

    The campaign of a visitor-day is the first campaign seen on one of its funnel events.
    ``fold``: the general (slow) shape even when the steps are distinct events (the tests' reference).
    ``cached``: a relation of per-day counts (``funnel_days_sql``'s columns) for days ``source`` lacks.
    """
    days = funnel_days_sql(steps, source, fold)
    if cached is not None:
        days = f"({days}) UNION ALL (SELECT day, campaign, reached, n FROM {cached})"
    step_names = " UNION ALL ".join(
        f"SELECT {k} AS step_no, {_quote(s)} AS step" for k, s in enumerate(steps, 1)
    )
    parts = [f"g AS ({days})", f"step_names AS ({step_names})"]
    return f"""CREATE OR REPLACE TEMP VIEW {name} AS
WITH {", ".join(parts)},
full_grid AS (
  SELECT g.day, g.campaign, st.step_no, st.step,
         coalesce(sum(g.n) FILTER (WHERE g.reached >= st.step_no), 0)::BIGINT AS visitors
  FROM g CROSS JOIN step_names st GROUP BY ALL)
SELECT day, campaign, step_no, step, visitors,
       round(visitors / nullif(first_value(visitors) OVER w, 0), 4) AS conversion_from_first,
       round(visitors / nullif(lag(visitors) OVER w, 0), 4) AS conversion_from_previous
FROM full_grid WINDOW w AS (PARTITION BY day, campaign ORDER BY step_no)
ORDER BY day, campaign, step_no;

-- The same funnel summed over the days (visitor-days reaching each step): overall, and per campaign.
CREATE OR REPLACE TEMP VIEW {name}_overall AS
WITH t AS (SELECT step_no, step, sum(visitors)::BIGINT AS visitors FROM {name} GROUP BY ALL)
SELECT step_no, step, visitors,
       round(visitors / nullif(first_value(visitors) OVER w, 0), 4) AS conversion_from_first,
       round(visitors / nullif(lag(visitors) OVER w, 0), 4) AS conversion_from_previous
FROM t WINDOW w AS (ORDER BY step_no) ORDER BY step_no;

CREATE OR REPLACE TEMP VIEW {name}_by_campaign AS
WITH t AS (SELECT campaign, step_no, step, sum(visitors)::BIGINT AS visitors FROM {name} GROUP BY ALL),
c AS (SELECT campaign, step_no, step, visitors,
             round(visitors / nullif(first_value(visitors) OVER w, 0), 4) AS conversion_from_first,
             round(visitors / nullif(lag(visitors) OVER w, 0), 4) AS conversion_from_previous,
             first_value(visitors) OVER w AS entered
      FROM t WINDOW w AS (PARTITION BY campaign ORDER BY step_no))
SELECT * EXCLUDE (entered) FROM c ORDER BY entered DESC, campaign, step_no"""


CUSTOMER_ORDERS = """
-- One row per customer order: when it was completed (NULL: only refund lines landed), its net
-- amount (refund lines subtract) and its revenue as the shop reported it when completed.
CREATE OR REPLACE TEMP VIEW customer_orders AS
SELECT stitched_customer_id AS customer_id, order_id,
       min(event_time) FILTER (WHERE kind = 'completed') AS ordered_at,
       sum(amount) AS net_amount,
       any_value(order_revenue) FILTER (WHERE kind = 'completed') AS order_revenue
FROM orders_stitched WHERE stitched_customer_id IS NOT NULL
GROUP BY ALL;
"""


def rfm_sql() -> str:
    """RFM scores and segments; the terms and the grid are ``pipeline.business``'s."""
    return f"""
-- RFM: recency (days since the last completed order, as of a day after the latest order unless
-- given), frequency (distinct completed orders), monetary (net revenue, refunds subtracted).
-- Scores 1-5 are quintiles by rank, ties kept together (score = 1 + floor(5 * (rank - 1) /
-- customers)); 5 is best. Segments: the usual R x F grid (pipeline/business.py). Customers
-- with no completed order are left out.
CREATE OR REPLACE TEMP MACRO rfm_at(as_of := NULL) AS TABLE
WITH c AS (
  SELECT customer_id, max(ordered_at) AS last_order_at, count(ordered_at) AS frequency,
         sum(net_amount) AS monetary
  FROM customer_orders GROUP BY customer_id HAVING count(ordered_at) > 0),
ref AS (SELECT coalesce(CAST(as_of AS TIMESTAMPTZ),
                        (SELECT max(last_order_at) FROM c) + INTERVAL 1 DAY) AS t),
m AS (SELECT c.*, datediff('day', c.last_order_at, ref.t) AS recency_days, count(*) OVER () AS n
      FROM c, ref),
s AS (
  SELECT *,
    1 + floor(5 * (rank() OVER (ORDER BY recency_days DESC) - 1) / n)::INT AS r_score,
    1 + floor(5 * (rank() OVER (ORDER BY frequency) - 1) / n)::INT AS f_score,
    1 + floor(5 * (rank() OVER (ORDER BY monetary) - 1) / n)::INT AS m_score
  FROM m)
SELECT customer_id, last_order_at, recency_days, frequency, round(monetary, 2) AS monetary,
       r_score, f_score, m_score, r_score::VARCHAR || f_score::VARCHAR || m_score::VARCHAR AS rfm_cell,
       {business.rfm_segment_sql("r_score", "f_score")} AS segment
FROM s ORDER BY customer_id;

CREATE OR REPLACE TEMP VIEW rfm AS SELECT * FROM rfm_at();

-- Segments: how many customers, their share and what they are worth.
CREATE OR REPLACE TEMP VIEW rfm_segments AS
SELECT segment, count(*) AS customers, round(count(*) / sum(count(*)) OVER (), 4) AS share,
       round(sum(monetary), 2) AS revenue,
       round(sum(monetary) / sum(sum(monetary)) OVER (), 4) AS revenue_share,
       round(avg(recency_days), 1) AS avg_recency_days, round(avg(frequency), 2) AS avg_frequency
FROM rfm GROUP BY segment ORDER BY revenue DESC;
"""


def value_tiers_sql(tiers: Sequence[business.Tier]) -> str:
    """Value tiers as the profiles and the VIP trigger define them (``pipeline.business``)."""
    tier = business.tier_sql("tier_revenue", "orders", tiers)
    return f"""
-- Value tiers (the VIP question): the highest tier whose lifetime revenue OR order threshold a
-- customer reached (settings: triggers.value_tiers, the profiles' and the VIP trigger's own),
-- '{business.NO_TIER}' below the first. revenue is net of refunds; tier_revenue is what the
-- tier is judged on (completed orders' revenue as reported; a refund does not take it back).
CREATE OR REPLACE TEMP VIEW customer_value AS
WITH c AS (SELECT customer_id, sum(net_amount) AS revenue, count(ordered_at) AS orders,
                  coalesce(sum(order_revenue), 0) AS tier_revenue
           FROM customer_orders GROUP BY customer_id)
SELECT customer_id, round(revenue, 2) AS revenue, orders, round(tier_revenue, 2) AS tier_revenue,
       row_number() OVER (ORDER BY revenue DESC, customer_id) AS revenue_rank, {tier} AS tier
FROM c;

CREATE OR REPLACE TEMP VIEW value_tiers AS
SELECT tier, count(*) AS customers, round(count(*) / sum(count(*)) OVER (), 4) AS customer_share,
       round(sum(revenue), 2) AS revenue, round(sum(revenue) / sum(sum(revenue)) OVER (), 4) AS revenue_share,
       round(avg(revenue), 2) AS avg_revenue, min(revenue) AS min_revenue
FROM customer_value GROUP BY tier
ORDER BY {business.tier_order_sql("tier", tiers)};
"""


COHORTS = """
-- Cohort retention: customers grouped by the month of their first order; for each later month,
-- how many of them ordered again, as a share of the cohort (month 0 is 1.0 by definition).
CREATE OR REPLACE TEMP VIEW cohort_retention AS
WITH o AS (SELECT customer_id, date_trunc('month', ordered_at) AS m FROM customer_orders
           WHERE ordered_at IS NOT NULL),
f AS (SELECT customer_id, min(m) AS cohort FROM o GROUP BY customer_id),
size AS (SELECT cohort, count(*) AS cohort_size FROM f GROUP BY cohort),
act AS (SELECT DISTINCT o.customer_id, f.cohort, datediff('month', f.cohort, o.m) AS month_number
        FROM o JOIN f USING (customer_id))
SELECT strftime(cohort, '%Y-%m') AS cohort_month, month_number, count(*) AS customers,
       any_value(cohort_size) AS cohort_size, round(count(*) / any_value(cohort_size), 4) AS retention
FROM act JOIN size USING (cohort) GROUP BY ALL ORDER BY cohort_month, month_number;
"""

_PAGE_VIEWS = (
    "(SELECT session_id, anonymous_id, event_date, visitor_id, message_id, event_time, "
    "coalesce(page_path, name, '(unknown)') AS page, enrichment_session_key, enrichment_is_late "
    "FROM events_stitched WHERE type IN ('page', 'screen') AND NOT coalesce(is_bot, false))"
)


def paths_sql(find_visits: bool = True) -> str:
    """Page views by visit, top paths, transitions. ``find_visits=False``: visits are device-days
    where the row names no session (what the paths cost without finding events' visits)."""
    source = f"({sessioned_sql(_PAGE_VIEWS)})" if find_visits else _PAGE_VIEWS
    return PATHS.replace("{page_views_source}", source)


PATHS = """
-- Page views in visit order; a visit is the worker's session (closed), else the device's day.
CREATE OR REPLACE TEMP VIEW page_views AS
SELECT coalesce(session_id, anonymous_id || '/' || event_date) AS visit, visitor_id, message_id,
       event_time, page
FROM {page_views_source};

-- Top paths: the first five pages of each visit, most common first.
CREATE OR REPLACE TEMP VIEW top_paths AS
WITH v AS (SELECT visit, array_to_string(list(page ORDER BY event_time, message_id)[1:5], ' > ') AS path
           FROM page_views GROUP BY visit)
SELECT path, count(*) AS visits, round(count(*) / sum(count(*)) OVER (), 4) AS share
FROM v GROUP BY path ORDER BY visits DESC, path;

-- Next-page transitions: where visitors go from each page ('(exit)' when the visit ends).
CREATE OR REPLACE TEMP VIEW page_transitions AS
WITH t AS (SELECT page AS from_page,
                  coalesce(lead(page) OVER (PARTITION BY visit ORDER BY event_time, message_id), '(exit)')
                  AS to_page
           FROM page_views)
SELECT from_page, to_page, count(*) AS transitions,
       round(count(*) / sum(count(*)) OVER (PARTITION BY from_page), 4) AS share_of_from_page
FROM t GROUP BY from_page, to_page ORDER BY transitions DESC, from_page, to_page;
"""

CAMPAIGNS = """
-- Campaign performance: per e-mail campaign, recipients sent -> opened -> clicked (within the
-- window after their send) -> visited (a session starting within the window after their click)
-- -> ordered. An order is attributed to the campaign last clicked by that customer within the
-- window before it (last click wins); revenue is the order's net amount.
CREATE OR REPLACE TEMP MACRO campaign_performance_within(days := 7) AS TABLE
WITH em AS (
  SELECT coalesce(e.customer_id, i.customer_id, e.anonymous_id) AS who,
         coalesce(e.campaign_name, e.campaign_id) AS campaign, e.event, e.event_time
  FROM email_interactions e LEFT JOIN identity_latest i ON i.anonymous_id = e.anonymous_id
  WHERE coalesce(e.campaign_name, e.campaign_id) IS NOT NULL),
sends AS (SELECT campaign, who, min(event_time) AS sent_at FROM em
          WHERE event IN ('Email Sent', 'Email Delivered') GROUP BY ALL),
opens AS (SELECT DISTINCT s.campaign, s.who FROM sends s JOIN em ON em.campaign = s.campaign
          AND em.who = s.who AND em.event = 'Email Opened'
          AND em.event_time BETWEEN s.sent_at AND s.sent_at + to_days(days)),
clicks AS (SELECT s.campaign, s.who, min(em.event_time) AS clicked_at FROM sends s JOIN em
           ON em.campaign = s.campaign AND em.who = s.who AND em.event = 'Email Link Clicked'
           AND em.event_time BETWEEN s.sent_at AND s.sent_at + to_days(days) GROUP BY ALL),
visits AS (SELECT DISTINCT c.campaign, c.who FROM clicks c JOIN sessions_stitched s
           ON coalesce(s.stitched_customer_id, s.anonymous_id) = c.who
           AND s."start" BETWEEN c.clicked_at AND c.clicked_at + to_days(days)),
ords AS (SELECT order_id, customer_id AS who, ordered_at, net_amount FROM customer_orders
         WHERE ordered_at IS NOT NULL),
attributed AS (SELECT o.order_id, any_value(o.net_amount) AS revenue,
                      arg_max(c.campaign, c.clicked_at) AS campaign
               FROM ords o JOIN clicks c ON c.who = o.who
               AND o.ordered_at BETWEEN c.clicked_at AND c.clicked_at + to_days(days)
               GROUP BY o.order_id)
SELECT s.campaign,
       count(DISTINCT s.who) AS sent,
       (SELECT count(*) FROM opens o WHERE o.campaign = s.campaign) AS opened,
       (SELECT count(*) FROM clicks c WHERE c.campaign = s.campaign) AS clicked,
       (SELECT count(*) FROM visits v WHERE v.campaign = s.campaign) AS visited,
       (SELECT count(*) FROM attributed a WHERE a.campaign = s.campaign) AS orders,
       (SELECT coalesce(round(sum(a.revenue), 2), 0) FROM attributed a WHERE a.campaign = s.campaign)
         AS revenue
FROM sends s GROUP BY s.campaign ORDER BY revenue DESC, s.campaign;
"""


def dormant_sql() -> str:
    """Activity per customer and the dormant ones; "active" is ``pipeline.business``'s."""
    quiet = ", ".join(business._quote(c) for c in business.INACTIVE_CHANNELS)
    active = business.active_sql("l.last_activity_at", "ref.t", "days")
    return f"""
-- Customer activity: the last event (e-mail channel aside: an open is the ESP's pixel) or order
-- of each customer; active = some activity less than `days` days before `as_of` (default: the
-- latest activity in the data). Dormant customers are the ones not active.
CREATE OR REPLACE TEMP MACRO customer_activity_at(days := 90, as_of := NULL) AS TABLE
WITH act AS (
  SELECT stitched_customer_id AS customer_id, event_time FROM events_stitched
  WHERE stitched_customer_id IS NOT NULL AND coalesce(channel, '') NOT IN ({quiet})
  UNION ALL SELECT customer_id, ordered_at FROM customer_orders WHERE ordered_at IS NOT NULL),
ref AS (SELECT coalesce(CAST(as_of AS TIMESTAMPTZ), (SELECT max(event_time) FROM act)) AS t),
last AS (SELECT customer_id, max(event_time) AS last_activity_at FROM act GROUP BY customer_id),
val AS (SELECT customer_id, sum(net_amount) AS revenue, count(ordered_at) AS orders
        FROM customer_orders GROUP BY customer_id)
SELECT l.customer_id, l.last_activity_at, datediff('day', l.last_activity_at, ref.t) AS days_inactive,
       {active} AS active, coalesce(v.orders, 0) AS orders, round(coalesce(v.revenue, 0), 2) AS revenue
FROM last l CROSS JOIN ref LEFT JOIN val v USING (customer_id);

CREATE OR REPLACE TEMP MACRO dormant_customers_for(days := 90, as_of := NULL) AS TABLE
SELECT customer_id, last_activity_at, days_inactive, orders, revenue
FROM customer_activity_at(days := days, as_of := as_of) WHERE NOT active
ORDER BY revenue DESC, customer_id;
"""


REALTIME = """
-- Real-time visitors: distinct visitors (customer, else device) with an event in the 5 and 30
-- minutes up to `now` (default: the latest event time, so it works on replayed data).
CREATE OR REPLACE TEMP MACRO realtime_visitors_at(now := NULL) AS TABLE
WITH ref AS (SELECT coalesce(CAST(now AS TIMESTAMPTZ), (SELECT max(event_time) FROM events_stitched)) AS t)
SELECT ref.t AS now,
       count(DISTINCT visitor_id) FILTER (WHERE event_time > ref.t - INTERVAL 5 MINUTE) AS active_5m,
       count(DISTINCT visitor_id) AS active_30m
FROM events_stitched, ref
WHERE event_time > ref.t - INTERVAL 30 MINUTE AND event_time <= ref.t AND NOT coalesce(is_bot, false)
GROUP BY ref.t;

CREATE OR REPLACE TEMP MACRO realtime_pages_at(now := NULL, minutes := 30) AS TABLE
WITH ref AS (SELECT coalesce(CAST(now AS TIMESTAMPTZ), (SELECT max(event_time) FROM events_stitched)) AS t)
SELECT coalesce(page_path, name) AS page, count(DISTINCT visitor_id) AS visitors, count(*) AS views
FROM events_stitched, ref
WHERE type IN ('page', 'screen') AND event_time > ref.t - to_minutes(minutes) AND event_time <= ref.t
  AND NOT coalesce(is_bot, false)
GROUP BY ALL ORDER BY visitors DESC, views DESC, page LIMIT 10;

CREATE OR REPLACE TEMP MACRO realtime_products_at(now := NULL, minutes := 30) AS TABLE
WITH ref AS (SELECT coalesce(CAST(now AS TIMESTAMPTZ), (SELECT max(event_time) FROM events_stitched)) AS t),
p AS (SELECT visitor_id, event, unnest(commerce_products) AS product FROM events_stitched, ref
      WHERE event IN ('Product Viewed', 'Product Added') AND event_time > ref.t - to_minutes(minutes)
        AND event_time <= ref.t AND NOT coalesce(is_bot, false))
SELECT coalesce(product.product_id, product.sku) AS product_id, any_value(product.name) AS name,
       count(DISTINCT visitor_id) AS visitors, count(*) FILTER (WHERE event = 'Product Viewed') AS views,
       count(*) FILTER (WHERE event = 'Product Added') AS adds
FROM p GROUP BY 1 ORDER BY visitors DESC, views DESC, product_id LIMIT 10;

CREATE OR REPLACE TEMP VIEW realtime_visitors AS SELECT * FROM realtime_visitors_at();
"""


def customer_sql() -> str:
    """The single customer view's macros; its events find their visits among the customer's only."""
    one = "(SELECT * FROM events_stitched WHERE stitched_customer_id = cid)"
    return CUSTOMER.replace("{sessioned_customer}", sessioned_sql(one, few_keys=True))


CUSTOMER = """
-- Single customer view, one macro per section (`webhouse report customer --param customer_id=..`).
CREATE OR REPLACE TEMP MACRO customer_events(cid, n := 20) AS TABLE
SELECT event_time, type, coalesce(event, name) AS what, channel, page_path, campaign, session_id,
       anonymous_id, message_id
FROM ({sessioned_customer}) ORDER BY event_time DESC LIMIT n;

CREATE OR REPLACE TEMP MACRO customer_sessions(cid, n := 10) AS TABLE
SELECT session_id, "start", "end", duration_ms, page_view_count, landing_page, exit_page, utm_campaign,
       converted, revenue
FROM sessions_stitched WHERE stitched_customer_id = cid ORDER BY "start" DESC LIMIT n;

CREATE OR REPLACE TEMP MACRO customer_order_lines(cid, n := 20) AS TABLE
SELECT event_time, order_id, kind, product_id, quantity, amount
FROM orders_stitched WHERE stitched_customer_id = cid ORDER BY event_time DESC, order_id, line_no LIMIT n;

-- Consent per purpose: the latest Consent Granted / Consent Withdrawn wins.
CREATE OR REPLACE TEMP MACRO customer_consent(cid) AS TABLE
WITH c AS (SELECT event, event_time, unnest(consent_purposes) AS purpose FROM events_stitched
           WHERE stitched_customer_id = cid AND event IN ('Consent Granted', 'Consent Withdrawn'))
SELECT purpose, arg_max(event, event_time) = 'Consent Granted' AS granted, max(event_time) AS updated_at
FROM c GROUP BY purpose ORDER BY purpose;

CREATE OR REPLACE TEMP MACRO customer_identities(cid) AS TABLE
SELECT anonymous_id, first_seen, last_seen, source_type FROM identity_map WHERE customer_id = cid
ORDER BY first_seen;
"""

CUSTOMER_ALERTS = """
CREATE OR REPLACE TEMP MACRO customer_alerts(cid, n := 20) AS TABLE
SELECT "time", rule_id, alert_type, status, suppression_reason, channel, message
FROM alerts WHERE customer_id = cid ORDER BY "time" DESC LIMIT n;
"""

CUSTOMER_PROFILE = """
CREATE OR REPLACE TEMP MACRO customer_profile(cid) AS TABLE
SELECT * EXCLUDE (profile_date) FROM profiles WHERE customer_id = cid;
"""


@dataclass(frozen=True, slots=True)
class FunnelSource:
    """Where the funnel view reads: stitched events, plus per-day counts kept for other days."""

    events: str = "events_stitched"
    cached: str | None = None


def analyses(
    cfg: WebhouseSettings, tiers: Sequence[business.Tier], funnel: FunnelSource = FunnelSource()
) -> list[Analysis]:
    return [
        Analysis(
            "funnel",
            funnel_sql.__doc__ or "",
            funnel_sql(cfg.funnel_steps, source=funnel.events, cached=funnel.cached),
        ),
        Analysis("customer_orders", "One row per customer order (net of refund lines).", CUSTOMER_ORDERS),
        Analysis("rfm", "RFM quintile scores and named segments per customer.", rfm_sql()),
        Analysis(
            "value_tiers",
            "Value tiers and each tier's share of revenue.",
            value_tiers_sql(tiers),
        ),
        Analysis("cohort_retention", "Retention by month of first order.", COHORTS),
        Analysis("top_paths", "Most common visit paths and next-page transitions.", paths_sql()),
        Analysis(
            "campaign_performance",
            "E-mail campaign funnel and attributed revenue.",
            CAMPAIGNS + f"\nCREATE OR REPLACE TEMP VIEW campaign_performance AS "
            f"SELECT * FROM campaign_performance_within({cfg.attribution_window_days});",
        ),
        Analysis(
            "dormant_customers",
            "Customers inactive for N days, with their value.",
            dormant_sql() + f"\nCREATE OR REPLACE TEMP VIEW dormant_customers AS "
            f"SELECT * FROM dormant_customers_for({cfg.dormant_days});\n"
            f"CREATE OR REPLACE TEMP VIEW customer_activity AS "
            f"SELECT * FROM customer_activity_at({cfg.dormant_days});",
        ),
        Analysis("realtime", "Active visitors in the last 5/30 minutes, top pages and products.", REALTIME),
        Analysis("customer", "Single customer view.", customer_sql()),
        Analysis("customer_alerts", "A customer's alerts.", CUSTOMER_ALERTS, ("alerts",)),
        Analysis("customer_profile", "A customer's latest profile.", CUSTOMER_PROFILE, ("profiles_history",)),
    ]


def install_analyses(
    con: duckdb.DuckDBPyConnection,
    cfg: WebhouseSettings,
    tiers: Sequence[business.Tier],
    tables: set[str],
    funnel: FunnelSource = FunnelSource(),
) -> list[str]:
    """Create every analysis whose tables exist; returns the names installed."""
    installed = []
    for analysis in analyses(cfg, tiers, funnel):
        if not set(analysis.requires) <= tables:
            continue
        con.execute(analysis.sql)
        installed.append(analysis.name)
    return installed
