"""The reordering window for out-of-order media chunks."""

from __future__ import annotations

import random

import pytest

from sipua.service.streams.reorder import Gap, ReorderWindow


def test_in_order_passes_straight_through() -> None:
    window: ReorderWindow[str] = ReorderWindow(4, first=1)
    assert [x for n in range(1, 6) for x in window.push(n, f"c{n}")] == [
        f"c{n}" for n in range(1, 6)
    ]
    assert window.out_of_order == 0 and window.held == 0


def test_swapped_neighbours_come_out_in_order() -> None:
    window: ReorderWindow[int] = ReorderWindow(4, first=1)
    out: list[int | Gap] = []
    for n in (1, 3, 2, 5, 4, 6):
        out += window.push(n, n)
    assert out == [1, 2, 3, 4, 5, 6]
    assert window.out_of_order == 2
    assert window.lost == 0


def test_a_lost_chunk_is_given_up_after_the_window_and_becomes_a_gap() -> None:
    window: ReorderWindow[int] = ReorderWindow(3, first=1)
    out: list[int | Gap] = []
    for n in (1, 3, 4):
        out += window.push(n, n)
    assert out == [1]  # waiting for 2
    out += window.push(5, 5)  # three held: give up on 2
    assert out == [1, Gap(1), 3, 4, 5]
    assert window.lost == 1
    assert window.push(2, 2) == []  # too late now
    assert window.late == 1


def test_duplicates_and_flush() -> None:
    window: ReorderWindow[int] = ReorderWindow(8, first=1)
    assert window.push(1, 1) == [1]
    assert window.push(1, 1) == []
    assert window.late == 1
    window.push(4, 4)
    assert window.push(4, 4) == []
    assert window.duplicates == 1
    window.push(3, 3)
    assert window.flush() == [Gap(1), 3, 4]


def test_a_renumbering_jump_is_not_filled_with_silence() -> None:
    window: ReorderWindow[int] = ReorderWindow(1, first=1)
    assert window.push(1000, 1000) == [1000]  # no Gap(999): that is no loss to conceal
    assert window.lost == 999


def test_first_key_defaults_to_the_first_chunk_seen() -> None:
    window: ReorderWindow[int] = ReorderWindow(2)
    assert window.push(7, 7) == [7]
    with pytest.raises(ValueError):
        ReorderWindow(0)


def test_random_local_shuffles_within_the_window_lose_nothing() -> None:
    rng = random.Random(4)
    for _ in range(50):
        keys = list(range(1, 101))
        # Move each chunk at most 2 places: within a window of 4 nothing is lost.
        for i in range(0, 98, 3):
            block = keys[i : i + 3]
            rng.shuffle(block)
            keys[i : i + 3] = block
        window: ReorderWindow[int] = ReorderWindow(4, first=1)
        out = [x for k in keys for x in window.push(k, k)] + window.flush()
        assert out == list(range(1, 101))
