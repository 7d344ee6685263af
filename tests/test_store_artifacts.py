"""The content-addressed artifact store."""

from __future__ import annotations

import hashlib
import os
import stat
import tracemalloc
from pathlib import Path

import pytest

from honeyjet.store.artifacts import ArtifactInfo, ArtifactStore, is_shasum

MiB = 1 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make(tmp_path: Path, **kw) -> ArtifactStore:
    kw.setdefault("max_object_bytes", 10 * MiB)
    kw.setdefault("quota_bytes", 100 * MiB)
    return ArtifactStore(tmp_path / "artifacts", **kw)


def stored_names(store: ArtifactStore) -> list[str]:
    return sorted(p.name for p in store.root.iterdir() if p.name != ".tmp")


def tmp_files(store: ArtifactStore) -> list[str]:
    return sorted(os.listdir(store.root / ".tmp"))


def test_put_stores_under_sha256_with_mode_0640(tmp_path):
    store = make(tmp_path)
    data = b"%!PS-Adobe-3.0\nshowpage\n"
    info = store.put(data)
    assert info == ArtifactInfo(sha(data), len(data), len(data), False, False, False, store.root / sha(data))
    assert info.path.read_bytes() == data
    assert stat.S_IMODE(info.path.stat().st_mode) == 0o640
    assert store.read(info.shasum) == data
    assert store.read(info.shasum, 3, 4) == data[3:7]
    assert store.read(info.shasum, offset=5) == data[5:]
    assert store.exists(info.shasum)
    assert store.usage_bytes == len(data)
    assert store.counters["stored"] == 1
    assert info.fields() == {
        "shasum": sha(data),
        "size": len(data),
        "stored_size": len(data),
        "truncated": False,
        "duplicate": False,
    }


def test_duplicate_is_detected_and_not_counted_twice(tmp_path):
    store = make(tmp_path)
    first = store.put(b"same bytes")
    w = store.writer()
    w.write(b"same ")
    w.write(b"bytes")
    second = w.close()
    assert not first.duplicate
    assert second.duplicate and second.shasum == first.shasum and second.path == first.path
    assert stored_names(store) == [first.shasum]
    assert store.usage_bytes == len(b"same bytes")
    assert store.counters["duplicates"] == 1 and store.counters["stored"] == 1
    assert tmp_files(store) == []


def test_put_of_recently_stored_content_reports_what_a_writer_reports(tmp_path):
    store = make(tmp_path, quota_bytes=100)
    first = store.put(b"HJT1\nC3\nabc")
    w = store.writer()
    w.write(b"HJT1\nC3\nabc")
    by_writer = w.close()
    again = store.put(b"HJT1\nC3\nabc")  # known: recognised from the sha256
    assert again == by_writer and again.duplicate and again.path == first.path
    assert store.counters["duplicates"] == 2 and store.counters["stored"] == 1
    assert store.put(b"HJT1\nC3\nabc", 5) == ArtifactInfo(sha(b"HJT1\n"), 11, 5, True, False, False, store.root / sha(b"HJT1\n"))
    assert store.usage_bytes == 16 and store.free_bytes == 84


def test_large_duplicate_spilled_to_temp_is_removed(tmp_path):
    store = make(tmp_path, spill_bytes=1024)
    data = os.urandom(10_000)
    store.put(data)
    w = store.writer()
    for i in range(0, len(data), 999):
        w.write(data[i : i + 999])
    assert len(tmp_files(store)) == 1  # spilled while streaming
    info = w.close()
    assert info.duplicate and info.stored_size == len(data)
    assert tmp_files(store) == []
    assert store.usage_bytes == len(data)


def test_small_objects_stay_in_memory_until_close(tmp_path):
    store = make(tmp_path, spill_bytes=4096)
    w = store.writer()
    w.write(b"x" * 4096)
    assert tmp_files(store) == [] and stored_names(store) == []
    info = w.close()
    assert stored_names(store) == [info.shasum]


def test_spill_to_temp_then_atomic_rename(tmp_path):
    store = make(tmp_path, spill_bytes=100)
    w = store.writer()
    w.write(b"a" * 60)
    assert tmp_files(store) == []
    w.write(b"b" * 60)  # crosses spill_bytes
    (name,) = tmp_files(store)
    assert is_shasum(name) is False  # temp names are random, never final names
    assert (store.root / ".tmp" / name).read_bytes() == b"a" * 60 + b"b" * 60
    assert stored_names(store) == []  # not visible before close
    info = w.close()
    assert tmp_files(store) == []
    assert stored_names(store) == [sha(b"a" * 60 + b"b" * 60)]
    assert info.path.read_bytes() == b"a" * 60 + b"b" * 60


def test_fsync_option_stores_the_same(tmp_path):
    store = make(tmp_path, fsync=True, spill_bytes=10)
    info = store.put(b"synced to disk before it becomes visible")
    assert info.path.read_bytes() == b"synced to disk before it becomes visible"


def test_truncation_at_per_object_cap(tmp_path):
    store = make(tmp_path, max_object_bytes=10)
    w = store.writer()
    w.write(b"0123456")
    w.write(b"789abcdef")  # straddles the cap
    w.write(b"more and more")  # entirely over the cap
    info = w.close()
    assert info.size == 7 + 9 + 13
    assert info.stored_size == 10 and info.truncated and not info.quota_exceeded
    assert info.shasum == sha(b"0123456789")
    assert info.path.read_bytes() == b"0123456789"
    assert store.counters["truncated"] == 1
    assert store.counters["bytes_dropped"] == info.size - 10


def test_writer_max_bytes_overrides_the_store_cap(tmp_path):
    store = make(tmp_path, max_object_bytes=4)
    big = store.writer(max_bytes=8)
    big.write(b"0123456789")
    assert big.close().stored_size == 8
    assert store.put(b"0123456789").stored_size == 4
    none = store.writer(max_bytes=0)
    none.write(b"abc")
    info = none.close()
    assert info.path is None and info.shasum == "" and info.truncated and not info.quota_exceeded


def test_quota_keeps_the_prefix_that_fits(tmp_path):
    store = make(tmp_path, quota_bytes=100)
    first = store.put(b"a" * 70)
    w = store.writer()
    w.write(b"b" * 50)  # only 30 bytes of quota left
    w.write(b"c" * 10)
    info = w.close()
    assert info.truncated and info.quota_exceeded
    assert info.stored_size == 30 and info.size == 60
    assert info.path.read_bytes() == b"b" * 30 and info.shasum == sha(b"b" * 30)
    assert store.usage_bytes == 100
    # quota full: nothing can be stored
    full = store.put(b"d" * 5)
    assert full.path is None and full.shasum == "" and full.stored_size == 0
    assert full.truncated and full.quota_exceeded and full.size == 5
    assert stored_names(store) == sorted([first.shasum, info.shasum])
    assert store.counters["quota_drops"] == 2
    # an empty object costs no quota and is still stored
    empty = store.put(b"")
    assert empty.path is not None and empty.shasum == sha(b"") and not empty.truncated


def test_concurrent_writers_share_the_quota(tmp_path):
    store = make(tmp_path, quota_bytes=100)
    a, b = store.writer(), store.writer()
    a.write(b"a" * 60)
    b.write(b"b" * 60)  # a already holds 60 of the 100 bytes
    ia, ib = a.close(), b.close()
    assert ia.stored_size == 60 and not ia.truncated
    assert ib.stored_size == 40 and ib.quota_exceeded
    assert store.usage_bytes == 100
    assert sum(p.stat().st_size for p in store.root.iterdir() if p.is_file()) == 100


def test_duplicate_gives_its_reservation_back(tmp_path):
    store = make(tmp_path, quota_bytes=100)
    store.put(b"x" * 50)
    dup = store.writer()
    dup.write(b"x" * 50)
    assert store.free_bytes == 0  # reserved while open
    info = dup.close()
    assert info.duplicate and info.stored_size == 50 and not info.truncated
    assert store.free_bytes == 50
    assert store.put(b"y" * 50).stored_size == 50


def test_duplicate_is_recognised_even_when_the_quota_is_full(tmp_path):
    store = make(tmp_path, quota_bytes=100, max_object_bytes=80, spill_bytes=10)
    first = store.put(b"j" * 60)
    store.put(b"f" * 40)  # quota now full
    again = store.writer()
    for _ in range(6):
        again.write(b"j" * 10)
    info = again.close()
    assert info.duplicate and info.shasum == first.shasum and info.path == first.path
    assert info.stored_size == 60 and not info.truncated and not info.quota_exceeded
    # over the cap as well: the duplicate is the capped prefix
    capped = store.put(b"c" * 30)  # nothing fits
    assert capped.path is None
    big = ArtifactStore(store.root, max_object_bytes=60, quota_bytes=100)
    w = big.writer()
    w.write(b"j" * 100)
    info = w.close()
    assert info.duplicate and info.shasum == first.shasum and info.truncated and not info.quota_exceeded
    assert info.size == 100 and info.stored_size == 60
    assert big.usage_bytes == 100 and tmp_files(big) == []


def test_concurrent_writers_with_same_content(tmp_path):
    store = make(tmp_path, spill_bytes=16)
    data = os.urandom(1000)
    writers = [store.writer() for _ in range(5)]
    for i in range(0, len(data), 100):  # interleaved, as sessions would be
        for w in writers:
            w.write(data[i : i + 100])
    infos = [w.close() for w in writers]
    assert {i.shasum for i in infos} == {sha(data)}
    assert [i.duplicate for i in infos] == [False, True, True, True, True]
    assert stored_names(store) == [sha(data)]
    assert tmp_files(store) == []
    assert store.usage_bytes == len(data)


def test_stale_temp_files_removed_at_start_and_usage_scanned(tmp_path):
    store = make(tmp_path, spill_bytes=0)
    kept = store.put(b"kept artifact")
    w = store.writer()
    w.write(b"left behind by a crash")  # spilled, never closed
    assert len(tmp_files(store)) == 1
    again = make(tmp_path)
    assert tmp_files(again) == []
    assert again.usage_bytes == len(b"kept artifact")
    assert again.read(kept.shasum) == b"kept artifact"


def test_file_names_are_only_sha256_hex(tmp_path):
    store = make(tmp_path, spill_bytes=8)
    for payload in [b"../../etc/passwd", b"/abs/path\x00", b"name with spaces", os.urandom(100), b""]:
        store.put(payload)
    names = stored_names(store)
    assert len(names) == 5 and all(is_shasum(n) for n in names)
    assert sorted(os.listdir(tmp_path)) == ["artifacts"]


@pytest.mark.parametrize(
    "bad",
    ["../x", "..", "", "A" * 64, "g" * 64, "a" * 63, "a" * 65, "/" + "a" * 63, "a" * 63 + "\n", "a" * 64 + "/", None],
)
def test_path_rejects_anything_but_lowercase_hex(tmp_path, bad):
    store = make(tmp_path)
    assert store.path(bad) is None
    assert store.read(bad) is None
    assert not store.exists(bad)


def test_path_and_read_of_missing_object(tmp_path):
    store = make(tmp_path)
    assert store.path("a" * 64) == store.root / ("a" * 64)
    assert store.read("a" * 64) is None and not store.exists("a" * 64)


def test_abort_and_context_manager(tmp_path):
    store = make(tmp_path, spill_bytes=4, quota_bytes=100)
    with store.writer() as w:
        w.write(b"spilled bytes")
        assert len(tmp_files(store)) == 1
    # left without close: aborted
    assert tmp_files(store) == [] and stored_names(store) == []
    assert store.free_bytes == 100
    w.write(b"more")  # no-op
    info = w.close()
    assert info.path is None and info.stored_size == 0
    with store.writer() as w2:
        w2.write(b"kept")
        kept = w2.close()
    assert kept.path is not None and stored_names(store) == [sha(b"kept")]
    assert store.counters["aborted"] == 1


def test_close_is_idempotent_and_writes_after_close_are_ignored(tmp_path):
    store = make(tmp_path)
    w = store.writer()
    w.write(b"abc")
    first = w.close()
    w.write(b"def")
    w.abort()
    assert w.close() is first
    assert first.path.read_bytes() == b"abc"
    assert store.counters["stored"] == 1


def test_disk_error_is_reported_not_raised(tmp_path):
    store = make(tmp_path, spill_bytes=4)
    (store.root / ".tmp").rmdir()
    (store.root / ".tmp").write_bytes(b"")  # a file where the temp directory should be
    w = store.writer()
    w.write(b"cannot spill this")
    w.write(b"nor this")
    info = w.close()
    assert info.path is None and info.truncated and info.size == 25
    assert store.counters["errors"] >= 1
    assert store.free_bytes == store.quota_bytes


def test_200_mb_stream_uses_constant_memory(tmp_path):
    store = make(tmp_path, max_object_bytes=300 * MiB, quota_bytes=400 * MiB)
    chunk = os.urandom(64 * 1024)
    expected = hashlib.sha256()
    tracemalloc.start()
    try:
        w = store.writer()
        for _ in range(3200):  # 200 MiB in 64 KiB writes
            w.write(chunk)
        info = w.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    for _ in range(3200):
        expected.update(chunk)
    assert info.stored_size == 200 * MiB and info.shasum == expected.hexdigest()
    assert info.path.stat().st_size == 200 * MiB
    assert peak < 2 * MiB, peak


def test_over_cap_stream_uses_constant_memory(tmp_path):
    store = make(tmp_path, max_object_bytes=MiB)
    chunk = b"\x1b" * 65536
    tracemalloc.start()
    try:
        w = store.writer()
        for _ in range(1600):  # 100 MiB offered, 1 MiB kept
            w.write(chunk)
        info = w.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.size == 100 * MiB and info.stored_size == MiB and info.truncated
    assert peak < 2 * MiB, peak
