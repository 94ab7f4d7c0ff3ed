"""A triggers partition's watermark: the slowest busy source, once every source has reported."""

from __future__ import annotations

from triggers.watermark import SourceClocks

SOURCES = ["enriched:0", "enriched:1", "sessions:0", "sessions:1"]


def test_no_watermark_until_every_source_has_reported() -> None:
    clocks = SourceClocks()
    for source, ms in [("enriched:0", 500), ("enriched:1", 300), ("sessions:0", 200)]:
        clocks.report(source, ms)
        assert clocks.advance(SOURCES) is None
    clocks.report("sessions:1", None)  # idle counts as a report
    assert clocks.advance(SOURCES) == 200


def test_the_slowest_busy_source_holds_the_watermark_and_idle_ones_do_not() -> None:
    clocks = SourceClocks()
    for source, ms in [("enriched:0", 900), ("enriched:1", 400), ("sessions:0", 350), ("sessions:1", None)]:
        clocks.report(source, ms)
    assert clocks.advance(SOURCES) == 350
    clocks.report("sessions:0", None)  # caught up and quiet
    assert clocks.advance(SOURCES) == 400
    clocks.report("enriched:1", 1000)
    assert clocks.advance(SOURCES) == 900
    for source in ("enriched:0", "enriched:1"):
        clocks.report(source, None)
    assert clocks.advance(SOURCES) == 1000  # all quiet: the latest time any source reached


def test_the_watermark_never_moves_back_and_survives_a_restart() -> None:
    clocks = SourceClocks()
    for source in SOURCES:
        clocks.report(source, 1000)
    assert clocks.advance(SOURCES) == 1000
    clocks.report("sessions:1", 800)  # a source's time never goes back either
    assert clocks.latest["sessions:1"] == 1000
    clocks.report("sessions:1", None)
    clocks.report("sessions:1", 700)  # an idle source wakes up with an older event: no step back
    assert clocks.advance(SOURCES) == 1000
    restored = SourceClocks.from_bytes(clocks.to_bytes())
    assert restored == clocks
    assert SourceClocks.from_bytes(b"1793612656000") == SourceClocks()  # the older one-number clock
