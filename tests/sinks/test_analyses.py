"""Each named analysis against figures computed by hand from a few records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.settings import TriggerSettings, ValueTierSettings
from tests.sinks.land import Webhouse
from tools.records import T0, event, link, order, session

D = timedelta(days=1)
H = timedelta(hours=1)
M = timedelta(minutes=1)
TIERS = [
    ValueTierSettings(name="silver", min_revenue=100.0, min_orders=4),
    ValueTierSettings(name="gold", min_revenue=300.0, min_orders=100),
    ValueTierSettings(name="vip", min_revenue=450.0, min_orders=100),
]


def _rfm_webhouse(tmp_path: Path) -> Webhouse:
    wh = Webhouse(tmp_path, TriggerSettings(value_tiers=TIERS))
    plan = {"c1": (range(25, 30), 100.0), "c2": (range(20, 24), 50.0), "c3": (range(10, 13), 30.0),
            "c4": (range(3, 5), 200.0), "c5": (range(0, 1), 10.0)}  # fmt: skip
    records = [
        order(f"{c}-{d}", f"{c}-o{d}", [("p", price, 1)], user_id=c, anonymous_id=None, at=T0 + d * D)
        for c, (days, price) in plan.items()
        for d in days
    ]
    wh.events(records)
    return wh


def test_rfm_quintiles_and_segments(tmp_path: Path) -> None:
    con = _rfm_webhouse(tmp_path).connect()
    rows = con.execute(
        "SELECT customer_id, recency_days, frequency, monetary, r_score, f_score, m_score, segment "
        "FROM rfm_at(as_of := ?) ORDER BY customer_id",
        [T0 + 30 * D],
    ).fetchall()
    assert rows == [
        ("c1", 1, 5, 500.0, 5, 5, 5, "champions"),
        ("c2", 7, 4, 200.0, 4, 4, 3, "loyal"),
        ("c3", 18, 3, 90.0, 3, 3, 2, "need_attention"),
        ("c4", 26, 2, 400.0, 2, 2, 4, "hibernating"),
        ("c5", 30, 1, 10.0, 1, 1, 1, "hibernating"),  # one order, long ago: never "promising"
    ]


def test_value_tiers_and_revenue_share(tmp_path: Path) -> None:
    con = _rfm_webhouse(tmp_path).connect()
    rows = con.sql("SELECT tier, customers, revenue, revenue_share FROM value_tiers").fetchall()
    # The profiles' thresholds (revenue OR orders): c2 is silver by its 4 orders; top tier first.
    assert rows == [
        ("vip", 1, 500.0, 0.4167),
        ("gold", 1, 400.0, 0.3333),
        ("silver", 1, 200.0, 0.1667),
        ("none", 2, 100.0, 0.0833),
    ]


def test_refund_lines_net_out_of_revenue(tmp_path: Path) -> None:
    wh = _rfm_webhouse(tmp_path)
    wh.events([order("r1", "c4-o3", [("p", 200.0, 1)], refund=True, user_id="c4", at=T0 + 5 * D)])
    rows = wh.connect().sql("SELECT customer_id, revenue FROM customer_value WHERE customer_id='c4'")
    assert rows.fetchall() == [("c4", 200.0)]


def test_cohort_retention_by_first_order_month(tmp_path: Path) -> None:
    wh = Webhouse(tmp_path)
    days = {
        "a": ["2026-01-15", "2026-02-10", "2026-04-01"],
        "b": ["2026-01-20"],
        "c": ["2026-02-05", "2026-03-05"],
    }
    wh.events(
        [
            order(
                f"{c}{i}",
                f"{c}{i}",
                [("p", 1.0, 1)],
                user_id=c,
                at=datetime.fromisoformat(d).replace(tzinfo=UTC),
            )
            for c, ds in days.items()
            for i, d in enumerate(ds)
        ]
    )
    rows = wh.connect().sql("SELECT * FROM cohort_retention").fetchall()
    assert rows == [
        ("2026-01", 0, 2, 2, 1.0),
        ("2026-01", 1, 1, 2, 0.5),
        ("2026-01", 3, 1, 2, 0.5),
        ("2026-02", 0, 1, 1, 1.0),
        ("2026-02", 1, 1, 1, 1.0),
    ]


def test_funnel_counts_ordered_steps_by_day_and_campaign(tmp_path: Path) -> None:
    wh = Webhouse(tmp_path, funnel_steps=["A", "B", "C"])
    wh.events(
        [
            event("1", name="A", anonymous_id="v1", at=T0, campaign="spring"),
            event("2", name="B", anonymous_id="v1", at=T0 + M),
            event("3", name="C", anonymous_id="v1", at=T0 + 2 * M),
            event("4", name="B", anonymous_id="v2", at=T0, campaign="spring"),  # B before A: no step 2
            event("5", name="A", anonymous_id="v2", at=T0 + M),
            event("6", name="A", anonymous_id="v3", at=T0),
            event("7", name="C", anonymous_id="v3", at=T0 + M),  # C without B: no step 3
        ]
    )
    rows = wh.connect().sql("SELECT * FROM funnel").fetchall()
    assert rows == [
        ("2026-03-02", "(none)", 1, "A", 1, 1.0, None),
        ("2026-03-02", "(none)", 2, "B", 0, 0.0, 0.0),
        ("2026-03-02", "(none)", 3, "C", 0, 0.0, None),
        ("2026-03-02", "spring", 1, "A", 2, 1.0, None),
        ("2026-03-02", "spring", 2, "B", 1, 0.5, 0.5),
        ("2026-03-02", "spring", 3, "C", 1, 0.5, 1.0),
    ]


def test_funnel_with_a_repeated_step_and_ties(tmp_path: Path) -> None:
    wh = Webhouse(tmp_path, funnel_steps=["A", "B", "A"])
    wh.events(
        [
            event("1", name="A", anonymous_id="v1", at=T0),
            event("2", name="B", anonymous_id="v1", at=T0 + M),
            event("3", name="A", anonymous_id="v1", at=T0 + 2 * M),  # A again after B: step 3
            event("4", name="A", anonymous_id="v2", at=T0),
            event("5", name="A", anonymous_id="v2", at=T0 + M),  # the second A comes before B
            event("6", name="B", anonymous_id="v2", at=T0 + 2 * M),
            event("7", name="B", anonymous_id="v3", at=T0),  # A and B at the same instant: in order
            event("8", name="A", anonymous_id="v3", at=T0),
        ]
    )
    rows = wh.connect().sql("SELECT step_no, visitors FROM funnel_overall").fetchall()
    assert rows == [(1, 3), (2, 3), (3, 1)]


def test_top_paths_and_next_page_transitions(tmp_path: Path) -> None:
    wh = Webhouse(tmp_path)
    visits = {"s1": ["/", "/a", "/b"], "s2": ["/", "/a"], "s3": ["/", "/a", "/b"]}
    wh.events(
        [
            event(f"{s}{i}", type="page", name="P", path=p, session_id=s, anonymous_id=s, at=T0 + i * M)
            for s, pages in visits.items()
            for i, p in enumerate(pages)
        ]
    )
    con = wh.connect()
    assert con.sql("SELECT * FROM top_paths").fetchall() == [
        ("/ > /a > /b", 2, 0.6667),
        ("/ > /a", 1, 0.3333),
    ]
    assert con.sql("SELECT * FROM page_transitions ORDER BY from_page, to_page").fetchall() == [
        ("/", "/a", 3, 1.0),
        ("/a", "(exit)", 1, 0.3333),
        ("/a", "/b", 2, 0.6667),
        ("/b", "(exit)", 2, 1.0),
    ]


def _mail(mid: str, what: str, who: str, campaign: str, at: datetime) -> dict:
    return event(mid, name=what, user_id=who, anonymous_id=f"a-{who}", at=at, channel="email",
                 email={"campaign_name": campaign})  # fmt: skip


def test_campaign_performance_attributes_orders_to_the_last_click(tmp_path: Path) -> None:
    wh = Webhouse(tmp_path)
    wh.events(
        [
            *(_mail(f"d{u}", "Email Delivered", u, "spring", T0) for u in ("u1", "u2", "u3")),
            _mail("o1", "Email Opened", "u1", "spring", T0 + H),
            _mail("o2", "Email Opened", "u2", "spring", T0 + H),
            _mail("k1", "Email Link Clicked", "u1", "spring", T0 + 2 * H),
            order("ord1", "ord1", [("p", 50.0, 1)], user_id="u1", at=T0 + D),
            order("ord2", "ord2", [("p", 70.0, 1)], user_id="u1", at=T0 + 10 * D),  # outside the window
            _mail("d4", "Email Delivered", "u2", "autumn", T0),
            _mail("k2", "Email Link Clicked", "u2", "autumn", T0 + D),
            order("ord3", "ord3", [("p", 30.0, 1)], user_id="u2", at=T0 + 2 * D),
        ]
    )
    wh.land("sessions", [session("s1", "a-u1", T0 + 2 * H + M, customer_id="u1")])
    rows = wh.connect().sql("SELECT * FROM campaign_performance").fetchall()
    assert rows == [("spring", 3, 2, 1, 1, 1, 50.0), ("autumn", 1, 0, 1, 0, 1, 30.0)]


def test_dormant_customers_with_their_value(tmp_path: Path) -> None:
    wh = Webhouse(tmp_path)
    wh.events(
        [
            order("x1", "x1", [("p", 40.0, 1)], user_id="d1", at=T0),
            event("x2", user_id="d2", at=T0 + 100 * D),
            event("x3", user_id="d3", at=T0 + 20 * D),
        ]
    )
    rows = wh.connect().sql("SELECT customer_id, days_inactive, orders, revenue FROM dormant_customers")
    assert rows.fetchall() == [("d1", 100, 1, 40.0)]


def test_realtime_visitors_pages_and_products(tmp_path: Path) -> None:
    wh = Webhouse(tmp_path)
    p1 = {"products": [{"product_id": "p1", "name": "Mug"}]}
    p2 = {"products": [{"product_id": "p2", "name": "Tea"}]}
    wh.events(
        [
            event("1", type="page", name="X", path="/x", anonymous_id="v1", at=T0 + 29 * M),
            event("2", type="page", name="Y", path="/y", anonymous_id="v2", at=T0 + 20 * M),
            event("3", type="page", name="X", path="/x", anonymous_id="v3", at=T0 + M),
            event("4", type="page", name="X", path="/x", anonymous_id="v4", at=T0 - 5 * M),
            event("5", name="Product Viewed", commerce=p1, anonymous_id="v1", at=T0 + 28 * M),
            event("6", name="Product Added", commerce=p1, anonymous_id="v2", at=T0 + 27 * M),
            event("7", name="Product Viewed", commerce=p2, anonymous_id="v2", at=T0 + 26 * M),
            event("8", name="Product Viewed", commerce=p2, anonymous_id="v1", at=T0 + 30 * M),  # "now"
        ]
    )
    con = wh.connect()
    assert con.sql("SELECT now, active_5m, active_30m FROM realtime_visitors").fetchall() == [
        (T0 + 30 * M, 2, 3)
    ]
    assert con.sql("SELECT * FROM realtime_pages_at()").fetchall() == [("/x", 2, 2), ("/y", 1, 1)]
    assert con.sql("SELECT * FROM realtime_products_at()").fetchall() == [
        ("p2", "Tea", 2, 2, 0),  # as many visitors as p1, more views
        ("p1", "Mug", 2, 1, 1),
    ]
    earlier = con.execute("SELECT active_5m, active_30m FROM realtime_visitors_at(now := ?)", [T0 + 2 * M])
    assert earlier.fetchall() == [(1, 2)]


def test_stitching_and_single_customer_view(tmp_path: Path) -> None:
    wh = Webhouse(tmp_path)
    consent = {"purposes": ["analytics", "marketing_email"]}
    wh.events(
        [
            event("e1", type="page", name="Home", path="/", anonymous_id="a9", at=T0),  # before login
            event("e2", name="Consent Granted", consent=consent, anonymous_id="a9", at=T0 + M),
            event(
                "e3",
                name="Consent Withdrawn",
                consent={"purposes": ["marketing_email"]},
                user_id="c9",
                anonymous_id="a9",
                at=T0 + H,
            ),
            event("e4", type="page", name="Home", path="/", anonymous_id="other", at=T0),
        ]
    )
    con = wh.connect()
    assert con.execute("SELECT message_id FROM customer_events('c9') ORDER BY 1").fetchall() == [("e3",)]
    wh.land("identity", [link("a9", "c9", T0 + H)])
    con = wh.connect()
    events = con.execute("SELECT message_id FROM customer_events('c9') ORDER BY 1").fetchall()
    assert events == [("e1",), ("e2",), ("e3",)]
    assert con.execute("SELECT purpose, granted FROM customer_consent('c9')").fetchall() == [
        ("analytics", True),
        ("marketing_email", False),
    ]


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_report_cli_prints_a_named_analysis(
    tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tools.cli import main

    _rfm_webhouse(tmp_path)
    monkeypatch.setenv("WEBHOUSE_WEBHOUSE__ROOT", str(tmp_path))
    monkeypatch.setenv("WEBHOUSE_WEBHOUSE__PII_HMAC_SECRET", "test-secret")
    assert main(["report", "value_tiers", "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert "silver" in out and "none" in out
    if fmt == "csv":  # the totals row: additive columns summed, averages left empty
        assert out.splitlines()[-1] == "total,5,1.0,1200.0,1.0,,"
    assert main(["sql", "-c", "SELECT round(sum(amount), 2) AS total FROM orders", "--format", fmt]) == 0
    assert "1200.0" in capsys.readouterr().out


def test_sql_shell_runs_statements_and_survives_typos(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tools.cli import main

    _rfm_webhouse(tmp_path)
    monkeypatch.setenv("WEBHOUSE_WEBHOUSE__ROOT", str(tmp_path))
    lines = iter(["SELECT count(*) AS n", "FROM orders;", "SELECT nope;", ".quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert main(["sql", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "n\r\n15\r\n" in out and "error:" in out  # csv module line ends


def test_events_find_their_visit_by_session_key_time_and_id(tmp_path: Path) -> None:
    """events_sessioned: an event sent on at arrival (session key, no session id) gets the id of
    the closed visit of its key whose (start, first id) .. (end, last id) holds its (time, id)."""
    wh = Webhouse(tmp_path)
    on: dict[str, Any] = {"anonymous_id": "d", "session_key": "d", "type": "page", "name": "P"}
    wh.events(
        [
            event("e1", at=T0, path="/", **on),
            event("e2", at=T0 + 5 * M, path="/a", **on),
            event("e3", at=T0 + 10 * M, path="/b", **on),
            event("srv", at=T0 + 6 * M, anonymous_id=None, user_id="c-1", session_key="d"),  # server-side
            event("late", at=T0 + 7 * M, is_late=True, **on),  # left out of every visit
            event("f1", at=T0 + 60 * M, path="/", **on),
            event("f2", at=T0 + 62 * M, path="/c", **on),
            event("f3", at=T0 + 62 * M, path="/d", **on),  # same time as f2, later id: the next visit
            event("g1", at=T0 + 5 * M, path="/", anonymous_id="g", session_key="g", type="page", name="P"),
            event("old", at=T0, path="/", anonymous_id="h", session_id="h-1", type="page", name="P"),
        ]
    )
    wh.land(
        "sessions",
        [
            session("v1", "d", T0, minutes=10, first_event_id="e1", last_event_id="e3"),
            session("v2", "d", T0 + 60 * M, minutes=2, first_event_id="f1", last_event_id="f2"),
        ],
    )
    con = wh.connect()
    rows = dict(con.sql("SELECT message_id, session_id FROM events_sessioned").fetchall())
    assert rows == {
        "e1": "v1", "e2": "v1", "e3": "v1", "srv": "v1", "late": None,
        "f1": "v2", "f2": "v2", "f3": None, "g1": None, "old": "h-1",
    }  # fmt: skip
    assert con.sql("SELECT count(*) FROM events").fetchall() == [(len(rows),)]
    # The customer view finds its events' visits among its own keys' only.
    assert con.sql("SELECT message_id, session_id FROM customer_events('c-1')").fetchall() == [("srv", "v1")]
    # Closed visits by their session, open ones by the device's day.
    assert con.sql("SELECT * FROM top_paths").fetchall() == [
        ("/", 2, 0.4),
        ("/ > /a > /b", 1, 0.2),
        ("/ > /c", 1, 0.2),
        ("P > /d", 1, 0.2),  # the late event and f3 are in no closed visit: the device's day
    ]


def test_sessions_a_late_event_merged_are_superseded(tmp_path: Path) -> None:
    wh = Webhouse(tmp_path)
    wh.land(
        "sessions",
        [
            session("p1", "a1", T0),
            session("p2", "a1", T0 + 20 * M),
            session("s12", "a1", T0, minutes=35, merged_session_ids=["p1", "p2"]),
            session("other", "a2", T0),
        ],
    )
    rows = wh.connect().sql("SELECT session_id FROM sessions_current ORDER BY 1").fetchall()
    assert rows == [("other",), ("s12",)]


def test_since_until_cut_every_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tools.cli import main

    _rfm_webhouse(tmp_path)  # orders on days 0..29 after T0
    monkeypatch.setenv("WEBHOUSE_WEBHOUSE__ROOT", str(tmp_path))
    monkeypatch.setenv("WEBHOUSE_WEBHOUSE__PII_HMAC_SECRET", "test-secret")
    since, until = (T0 + 20 * D).date().isoformat(), (T0 + 25 * D).date().isoformat()
    args = ["--format", "csv", "--since", since, "--until", until]
    assert main(["report", "rfm", *args]) == 0
    out = capsys.readouterr().out
    # Days 20..24: c2's four orders (days 20-23) only; RFM as of the day after the last of them.
    assert "total,1,1.0,200.0,1.0,," in out.splitlines()
    query = "SELECT count(*) AS n, min(order_date) AS lo, max(order_date) AS hi FROM orders"
    assert main(["sql", *args, "-c", query]) == 0
    assert capsys.readouterr().out.splitlines()[1] == f"4,{since},{(T0 + 23 * D).date()}"


def test_funnel_overall_and_by_campaign(tmp_path: Path) -> None:
    wh = Webhouse(tmp_path, funnel_steps=["Product Viewed", "Order Completed"])
    wh.events(
        [
            event("v1", name="Product Viewed", anonymous_id="a1", campaign="spring"),
            event("o1", name="Order Completed", anonymous_id="a1", at=T0 + M),
            event("v2", name="Product Viewed", anonymous_id="a2", campaign="spring", at=T0 + D),
            event("v3", name="Product Viewed", anonymous_id="a3"),
            event("o3", name="Order Completed", anonymous_id="a3", at=T0 + H),
        ]
    )
    con = wh.connect()
    assert con.sql("SELECT step, visitors, conversion_from_first FROM funnel_overall").fetchall() == [
        ("Product Viewed", 3, 1.0),
        ("Order Completed", 2, 0.6667),
    ]
    assert con.sql("SELECT campaign, step, visitors FROM funnel_by_campaign").fetchall() == [
        ("spring", "Product Viewed", 2),
        ("spring", "Order Completed", 1),
        ("(none)", "Product Viewed", 1),
        ("(none)", "Order Completed", 1),
    ]


def test_report_html_renders_any_webhouse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tools.cli import main

    _rfm_webhouse(tmp_path / "tables")
    monkeypatch.setenv("WEBHOUSE_WEBHOUSE__ROOT", str(tmp_path / "tables"))
    monkeypatch.setenv("WEBHOUSE_WEBHOUSE__PII_HMAC_SECRET", "test-secret")
    out = tmp_path / "r.html"
    assert main(["report", "html", "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"report: {out}\n"
    page = out.read_text()
    assert "events from 2026-03-02 to 2026-03-31 (30 days)" in page
    assert "<h2>Events per day</h2>" in page and "Not available" not in page
