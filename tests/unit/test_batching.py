"""Batch flush rules (docs/semantics.md §2.2, §2.3): size, 6 MB, window."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from esm.batching import MAX_PAYLOAD_BYTES, BatchBuilder, BatchLimits, Empty, Flush, Wait
from esm.events import batch_event


@dataclass
class Rec:
    size: int


def test_empty_batch_waits_for_records() -> None:
    b: BatchBuilder[Rec] = BatchBuilder(BatchLimits(max_records=10, window_s=5))
    assert isinstance(b.decide(100.0), Empty)


def test_window_zero_flushes_what_one_read_gave() -> None:
    b: BatchBuilder[Rec] = BatchBuilder(BatchLimits(max_records=10, window_s=0))
    assert b.offer_all([Rec(10), Rec(10)], now=100.0) == []
    assert b.decide(100.0) == Flush("window")


def test_window_opens_with_the_first_record_and_flushes_when_it_elapses() -> None:
    b: BatchBuilder[Rec] = BatchBuilder(BatchLimits(max_records=100, window_s=5))
    b.offer(Rec(10), now=100.0)
    assert b.decide(101.0) == Wait(105.0)
    b.offer(Rec(10), now=103.0)
    assert b.decide(104.999) == Wait(105.0)
    assert b.decide(105.0) == Flush("window")


def test_batch_size_flushes_before_the_window() -> None:
    b: BatchBuilder[Rec] = BatchBuilder(BatchLimits(max_records=3, window_s=300))
    carry = b.offer_all([Rec(1)] * 5, now=0.0)
    assert len(b) == 3 and len(carry) == 2
    assert b.room == 0
    assert b.decide(0.0) == Flush("size")


def test_six_megabytes_cap_counts_the_whole_serialised_event() -> None:
    rec = 1024 * 1024  # 1 MiB records: 5 fit with the envelope and commas, the 6th does not
    b: BatchBuilder[Rec] = BatchBuilder(BatchLimits(max_records=10_000, window_s=300))
    carry = b.offer_all([Rec(rec)] * 7, now=0.0)
    assert len(b) == 5 and len(carry) == 2
    assert b.payload_bytes <= MAX_PAYLOAD_BYTES
    assert b.decide(0.0) == Flush("bytes")


def test_payload_bytes_match_the_built_event() -> None:
    raws = [b'{"a":1}', b'{"bb":22}', b'{"c":"x"}']
    b: BatchBuilder[Rec] = BatchBuilder(BatchLimits(max_records=10))
    b.offer_all([Rec(len(r)) for r in raws], now=0.0)
    assert b.payload_bytes == len(batch_event(raws))


def test_exact_fit_at_the_cap() -> None:
    overhead = len(batch_event([]))
    size = (MAX_PAYLOAD_BYTES - overhead - 1) // 2  # two records and one comma fill it exactly
    b: BatchBuilder[Rec] = BatchBuilder(BatchLimits(max_records=10, window_s=1))
    assert b.offer(Rec(size), 0.0) and b.offer(Rec(size), 0.0)
    assert b.payload_bytes == overhead + 2 * size + 1 <= MAX_PAYLOAD_BYTES
    assert not b.offer(Rec(1), 0.0)


@pytest.mark.parametrize("size", [MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES * 2])
def test_an_oversized_record_still_travels_alone(size: int) -> None:
    b: BatchBuilder[Rec] = BatchBuilder(BatchLimits(max_records=10))
    assert b.offer(Rec(size), 0.0)
    assert not b.offer(Rec(1), 0.0)
    assert b.decide(0.0) == Flush("bytes")


@pytest.mark.parametrize("seed", range(40))
def test_offer_all_is_offering_each_in_turn(seed: int) -> None:
    """offer_all takes chunks at once when they fit; the outcome is offer's, record by record."""
    rnd = random.Random(seed)
    limits = BatchLimits(max_records=rnd.choice([3, 10, 100]), window_s=1, max_bytes=2000)
    chunks = [
        [Rec(rnd.choice([1, 50, 400, 2500])) for _ in range(rnd.randint(0, 12))]
        for _ in range(rnd.randint(1, 6))
    ]
    fast: BatchBuilder[Rec] = BatchBuilder(limits)
    slow: BatchBuilder[Rec] = BatchBuilder(limits)
    for t, chunk in enumerate(chunks):
        carry_fast = fast.offer_all(chunk, now=float(t))
        carry_slow = list(chunk)
        while carry_slow and slow.offer(carry_slow[0], now=float(t)):
            carry_slow.pop(0)
        assert carry_fast == carry_slow
        assert fast.records == slow.records
        assert fast.payload_bytes == slow.payload_bytes
        assert fast.opened_at == slow.opened_at
        assert fast.decide(float(t)) == slow.decide(float(t))
        if carry_fast:
            break
