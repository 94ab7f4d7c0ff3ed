"""The UCI Online Retail loader on a slice of the real file: totals survive the trip to the tables."""

from __future__ import annotations

import gzip
import itertools
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.errors import SettingsError
from pipeline.settings import KafkaSettings
from tests.sinks.land import Webhouse
from tools.uci import invoices, read_rows

# The data lives next to the repository, not in the package: tools take its path as an argument.
DEFAULT_PATH = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "uci-online-retail" / "online-retail.csv.gz"
)

SLICE = 3000


def _slice() -> list[dict[str, str]]:
    return list(itertools.islice(read_rows(DEFAULT_PATH), SLICE))


def _source_total(rows: list[dict[str, str]]) -> Decimal:
    return sum((Decimal(r["Quantity"]) * Decimal(r["UnitPrice"]) for r in rows), Decimal(0))


def test_invoices_become_order_events_with_the_source_totals(tmp_path: Path) -> None:
    rows = _slice()
    events = list(invoices(rows))
    assert len(events) == len({r["InvoiceNo"] for r in rows})
    assert sum(len(e["commerce"]["products"]) for e in events) == SLICE
    cancels = [e for e in events if e["commerce"]["order_id"].startswith("C")]
    assert cancels and all(e["event"] == "Order Refunded" for e in cancels)
    guests = [e for e in events if e["user_id"] is None]
    assert all(e["anonymous_id"] == f"uci-guest-{e['commerce']['order_id']}" for e in guests)
    assert events[0]["timestamp"].isoformat() == "2010-12-01T08:26:00+00:00"  # GMT in winter

    wh = Webhouse(tmp_path)
    wh.events(events)
    con = wh.connect()
    (lines, total, customers), *_ = con.sql(
        "SELECT count(*), round(sum(amount), 2), count(DISTINCT customer_id) FROM orders"
    ).fetchall()
    assert lines == SLICE
    assert Decimal(str(total)) == _source_total(rows).quantize(Decimal("0.01"))
    assert customers == len({r["CustomerID"] for r in rows if r["CustomerID"]})
    assert con.sql("SELECT sum(customers) FROM value_tiers").fetchall() == [(customers,)]


@pytest.mark.kafka
def test_load_uci_produces_to_the_raw_topic_and_the_sink_lands_it(
    kafka_settings: KafkaSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tools.cli import main

    monkeypatch.setenv("WEBHOUSE_KAFKA__BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    monkeypatch.setenv("WEBHOUSE_KAFKA__TOPIC_PREFIX", kafka_settings.topic_prefix)
    monkeypatch.setenv("WEBHOUSE_KAFKA__DEFAULT_PARTITIONS", str(kafka_settings.default_partitions))
    monkeypatch.setenv("WEBHOUSE_WEBHOUSE__ROOT", str(tmp_path / "wh"))
    monkeypatch.setenv("WEBHOUSE_WEBHOUSE__EVENTS_SOURCE", "raw")
    monkeypatch.setenv("WEBHOUSE_METRICS__PORT", "0")
    source = tmp_path / "slice.csv.gz"  # the real file's first rows: the loader reads a file whole
    with gzip.open(DEFAULT_PATH, "rt") as full, gzip.open(source, "wt") as part:
        part.writelines(itertools.islice(full, SLICE + 1))
    load = ["load-uci", "--path", str(source), "--limit", "200"]
    assert main(load) == 0
    assert main(load) == 0  # loaded twice: still once in the tables
    assert main(["sink", "--assign-all", "--exit-when-idle", "--tables", "events,orders"]) == 0
    first = list(itertools.islice(invoices(read_rows(source)), 200))
    lines = [p for e in first for p in e["commerce"]["products"]]
    expected = sum((Decimal(str(p["price"])) * p["quantity"] for p in lines), Decimal(0))
    from pipeline.settings import load_settings
    from sinks.duck import connect

    con = connect(load_settings())
    (n, total), *_ = con.sql("SELECT count(*), round(sum(amount), 2) FROM orders").fetchall()
    assert n == len(lines) and Decimal(str(total)) == expected.quantize(Decimal("0.01"))
    assert con.sql("SELECT count(*) FROM events").fetchall() == [(len(first),)]


def test_a_missing_data_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"UCI Online Retail file not found: .*pass --path"):
        next(read_rows(tmp_path / "online-retail.csv.gz"))
