"""`webhouse load-uci`: the UCI Online Retail data as Order Completed events on the raw topic.

Choices (see the data's PROVENANCE.md):
- one event per invoice, its rows as the products list in file order, duplicates included
  (5,268 exact duplicate rows are real lines of the source; dropping them would break its totals);
- invoices starting with ``C`` are cancellations: ``Order Refunded`` with the source's negative
  quantities; the orders table stores refund lines negative, so ``SUM(amount)`` equals the
  source's ``SUM(Quantity * UnitPrice)``; other rows keep their sign (stock adjustments, bad debt);
- a row without CustomerID is a guest order: no user id, an anonymous id per invoice
  (``uci-guest-<invoice>``), so its revenue counts but it belongs to no customer;
- InvoiceDate is UK local time: converted from Europe/London to UTC;
- the message id is ``uci-<invoice>``: loading twice lands every invoice once.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.errors import SettingsError

LONDON = ZoneInfo("Europe/London")


def read_rows(path: Path) -> Iterator[dict[str, str]]:
    """Rows of the gzipped CSV at ``path`` (the data is not shipped: its path is an argument)."""
    if not Path(path).is_file():
        raise SettingsError(
            f"UCI Online Retail file not found: {path} (pass --path to the gzipped CSV of the "
            "'Online Retail' data set, columns InvoiceNo, StockCode, ..., Country)"
        )
    with gzip.open(path, "rt", newline="", encoding="utf-8") as f:
        yield from csv.DictReader(f)


def _customer(raw: str) -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    return str(int(float(raw)))


def _time(raw: str) -> datetime:
    local = datetime.strptime(raw.strip()[:16], "%Y-%m-%d %H:%M").replace(tzinfo=LONDON)
    return local.astimezone(UTC)


def invoice_event(invoice: str, lines: list[dict[str, str]]) -> dict[str, Any]:
    """The customer_event record of one invoice."""
    first = lines[0]
    customer = _customer(first.get("CustomerID", ""))
    at = _time(first["InvoiceDate"])
    products: list[dict[str, Any]] = [
        {
            "product_id": r["StockCode"],
            "sku": r["StockCode"],
            "name": r["Description"] or None,
            "price": float(r["UnitPrice"]),
            "quantity": int(r["Quantity"]),
            "position": i,
        }
        for i, r in enumerate(lines, start=1)
    ]
    revenue = round(sum(float(r["UnitPrice"]) * int(r["Quantity"]) for r in lines), 2)
    return {
        "message_id": f"uci-{invoice}",
        "type": "track",
        "event": "Order Refunded" if invoice.startswith("C") else "Order Completed",
        "channel": "server",
        "user_id": customer,
        "anonymous_id": None if customer else f"uci-guest-{invoice}",
        "timestamp": at,
        "received_at": at,
        "source": "uci-online-retail",
        "context": {},
        "commerce": {"order_id": invoice, "revenue": revenue, "currency": "GBP", "products": products},
        "properties": {"country": json.dumps(first["Country"])},
    }


def invoices(rows: Iterable[dict[str, str]]) -> Iterator[dict[str, Any]]:
    """Group rows by InvoiceNo (first-appearance order) and yield one event per invoice."""
    grouped: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        grouped.setdefault(row["InvoiceNo"], []).append(row)
    for invoice, lines in grouped.items():
        yield invoice_event(invoice, lines)
