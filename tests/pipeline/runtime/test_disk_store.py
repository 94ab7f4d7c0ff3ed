"""The disk store: pending writes land only with a commit, with the changelog offset they reached,
and a reopened file resumes from there (or starts over for another changelog)."""

from __future__ import annotations

from pathlib import Path

from pipeline.runtime.store import READ_CACHE_VALUE_MAX, DiskStore, StateFiles

SOURCE = "cluster/changelog/id-1"


def restore(
    store: DiskStore, partition: int, records: list[tuple[bytes, bytes | None]], end: int
) -> int | None:
    start = store.resume_offset(partition, SOURCE)
    for key, value in records:
        store.put(partition, key, value)
    store.restored(partition, SOURCE, end)
    return start


def test_writes_land_with_their_offsets_and_a_new_process_resumes_there(tmp_path: Path) -> None:
    files = StateFiles(tmp_path)
    store = files.store("devices")
    assert restore(store, 0, [(b"a", b"1"), (b"b", b"2"), (b"a", None)], end=3) is None
    assert dict(store.items()) == {b"b": b"2"}
    store.put(0, b"c", b"3")
    assert store.get(b"c") == b"3"  # the stage sees its own pending write
    store.commit({0: 7}, SOURCE)
    store.put(0, b"d", b"4")  # pending when the process dies: never committed
    files.close()

    again = StateFiles(tmp_path)
    store = again.store("devices")
    assert store.get(b"b") is None  # not owned until restored
    assert restore(store, 0, [(b"e", b"5")], end=9) == 7
    assert dict(store.items()) == {b"b": b"2", b"c": b"3", b"e": b"5"}
    assert len(store) == 3
    store.put(0, b"b", None)
    store.put(0, b"f", b"6")
    assert sorted(store) == [b"c", b"e", b"f"]  # the keys, pending writes included
    again.close()


def test_a_dropped_partition_keeps_its_rows_for_later_and_loses_its_pending_writes(tmp_path: Path) -> None:
    files = StateFiles(tmp_path)
    store = files.store("devices")
    restore(store, 0, [(b"a", b"1")], end=1)
    restore(store, 1, [(b"z", b"9")], end=1)
    store.put(1, b"y", b"8")
    store.drop({1})
    store.commit({}, SOURCE)
    assert dict(store.items()) == {b"a": b"1"}
    assert restore(store, 1, [], end=1) == 1
    assert dict(store.items()) == {b"a": b"1", b"z": b"9"}
    files.close()


def test_rows_of_another_changelog_are_forgotten(tmp_path: Path) -> None:
    files = StateFiles(tmp_path)
    store = files.store("devices")
    restore(store, 0, [(b"a", b"1")], end=1)
    store.drop({0})
    assert store.resume_offset(0, "other-cluster/changelog/id-2") is None
    store.restored(0, "other-cluster/changelog/id-2", 0)
    assert dict(store.items()) == {}
    files.close()


def test_a_long_restore_lands_in_chunks_with_the_latest_write_of_each_key(tmp_path: Path) -> None:
    files = StateFiles(tmp_path)
    store = files.store("devices")
    records: list[tuple[bytes, bytes | None]] = [(b"k%d" % (i % 1000), b"%d" % i) for i in range(25_000)]
    records += [(b"k%d" % i, None) for i in range(0, 1000, 2)]
    restore(store, 0, records, end=len(records))
    saved = dict(store.items())
    assert len(saved) == 500
    assert saved[b"k1"] == b"24001"
    files.close()


def test_processes_on_one_host_take_separate_files(tmp_path: Path) -> None:
    first, second = StateFiles(tmp_path), StateFiles(tmp_path)
    assert first.path != second.path
    first.close()
    third = StateFiles(tmp_path)
    assert third.path.name == "slot-0.sqlite"
    second.close()
    third.close()


def test_the_read_cache_holds_only_what_the_table_holds(tmp_path: Path) -> None:
    """Rows read are cached (a second read does not ask SQLite); a commit updates or removes them;
    a dropped, forgotten or restored partition's rows leave the cache; it keeps at most its size."""
    files = StateFiles(tmp_path)
    store = DiskStore(files.db, "states", cache_entries=2)
    restore(store, 0, [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")], end=3)
    restore(store, 1, [(b"z", b"9")], end=1)
    assert (store.get(b"a"), store.get(b"z")) == (b"1", b"9")
    files.db.execute('UPDATE "kv_states" SET value = ? WHERE key = ?', (b"behind its back", b"a"))
    assert store.get(b"a") == b"1"  # from the cache
    store.put(0, b"a", b"10")
    store.put(1, b"z", None)
    store.commit({0: 4, 1: 2}, SOURCE)
    assert (store.get(b"a"), store.get(b"z")) == (b"10", None)
    store.get(b"b")
    store.get(b"c")
    assert list(store.cache) == [b"b", b"c"]  # the least recently read went
    store.drop({0})
    assert store.get(b"b") is None and not store.cache
    assert restore(store, 0, [(b"b", b"20")], end=5) == 4
    assert store.get(b"b") == b"20"
    store.resume_offset(0, SOURCE)  # restored again (a rewind): what it held is read anew
    assert not store.cache
    files.close()


def test_large_values_are_read_from_the_table_each_time_not_cached(tmp_path: Path) -> None:
    """A record of held inputs can be megabytes: a cache of 20,000 entries must not keep them."""
    files = StateFiles(tmp_path)
    store = files.store("pending")
    large = b"x" * (READ_CACHE_VALUE_MAX + 1)
    restore(store, 0, [(b"large", large), (b"small", b"1")], end=2)
    assert (store.get(b"large"), store.get(b"small")) == (large, b"1")
    store.prefetch([b"large"])
    assert list(store.cache) == [b"small"]
    store.put(0, b"small", large)
    store.commit({0: 3}, SOURCE)
    assert not store.cache and store.get(b"small") == large
    files.close()


def test_a_key_found_absent_is_remembered_until_written_or_a_partition_moves(tmp_path: Path) -> None:
    files = StateFiles(tmp_path)
    store = files.store("states")
    restore(store, 0, [], end=0)
    restore(store, 1, [], end=0)
    assert store.get(b"new") is None
    files.db.execute('INSERT INTO "kv_states" VALUES (?, ?, ?)', (b"new", 0, b"behind its back"))
    assert store.get(b"new") is None  # remembered as absent: no second lookup
    store.put(0, b"new", b"1")
    store.commit({0: 1}, SOURCE)
    assert store.get(b"new") == b"1"  # the commit's write replaced the absence
    assert store.get(b"other") is None
    files.db.execute('INSERT INTO "kv_states" VALUES (?, ?, ?)', (b"other", 0, b"2"))
    store.drop({1})  # absences are of no known partition: all forgotten
    assert store.get(b"other") == b"2"
    files.close()


def test_prefetch_reads_many_keys_into_the_cache_at_once(tmp_path: Path) -> None:
    files = StateFiles(tmp_path)
    store = files.store("states")
    restore(store, 0, [(b"a", b"1")], end=1)
    restore(store, 1, [(b"z", b"9")], end=1)
    store.drop({1})
    store.put(0, b"p", b"pending")
    store.prefetch([b"a", b"z", b"none", b"p", b"a"])
    assert dict(store.cache) == {b"a": (0, b"1"), b"none": (-1, None)}  # z: not owned; p: pending
    files.db.execute('DELETE FROM "kv_states"')
    assert (store.get(b"a"), store.get(b"none"), store.get(b"z"), store.get(b"p")) == (
        b"1",
        None,
        None,
        b"pending",
    )
    files.close()


def test_a_commit_of_many_writes_lands_every_one(tmp_path: Path) -> None:
    """Writes go many rows per statement: more rows than one statement takes, both ways."""
    files = StateFiles(tmp_path)
    store = files.store("states")
    restore(store, 0, [(b"k%d" % i, b"old") for i in range(1000)], end=1000)
    for i in range(1000):
        store.put(0, b"k%d" % i, None if i % 3 == 0 else b"%d" % i)
    for i in range(1000, 1700):
        store.put(0, b"k%d" % i, b"%d" % i)
    store.commit({0: 2700}, SOURCE)
    expected = {b"k%d" % i: b"%d" % i for i in range(1700) if i >= 1000 or i % 3}
    assert dict(store.items()) == expected
    files.close()
