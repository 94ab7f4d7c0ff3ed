"""A report's totals row sums the additive columns and keeps each column's type (a BIGINT count
stays BIGINT: summed with sum() it became HUGEINT, and the column printed as int128)."""

from __future__ import annotations

import duckdb

from sinks.reports import Section


def test_the_totals_row_sums_and_keeps_the_column_types() -> None:
    con = duckdb.connect()
    query = "SELECT * FROM (VALUES ('a', 2::BIGINT, 1.5::DOUBLE, 0.25), ('b', 3::BIGINT, 2.0, 0.75)) t(segment, customers, revenue, share)"  # noqa: E501
    section = Section("rfm", query, total_label="segment", total_sums=("customers", "revenue", "share"))
    plain, totalled = con.sql(query), con.sql(section.sql())
    assert totalled.types[:3] == plain.types[:3]  # a decimal may gain a digit of precision
    assert str(totalled.types[3]).startswith("DECIMAL")
    assert totalled.fetchall()[-1] == ("total", 5, 3.5, 1)


def test_the_totals_of_an_empty_section_are_empty() -> None:
    con = duckdb.connect()
    query = "SELECT 'a' AS segment, 1::BIGINT AS customers WHERE false"
    section = Section("rfm", query, total_label="segment", total_sums=("customers",))
    assert con.sql(section.sql()).fetchall() == [("total", None)]
