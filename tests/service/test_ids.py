from __future__ import annotations

import base64
import re
import threading
import time

import pytest

from sipua.service.ids import (
    UlidGenerator,
    is_session_id,
    new_session_id,
    new_token,
    ulid_timestamp_ms,
)

CROCKFORD = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def decode(ulid: str) -> int:
    value = 0
    for ch in ulid:
        value = value * 32 + ALPHABET.index(ch)
    return value


def test_session_id_format() -> None:
    sid = new_session_id()
    assert sid.startswith("sess_")
    assert len(sid) == len("sess_") + 26
    assert CROCKFORD.fullmatch(sid[5:])
    assert is_session_id(sid)


def test_session_id_embeds_current_time() -> None:
    before = time.time_ns() // 1_000_000
    sid = new_session_id()
    after = time.time_ns() // 1_000_000
    # Monotonic mode may borrow a millisecond ahead under heavy use; allow a little slack.
    assert before <= ulid_timestamp_ms(sid) <= after + 5


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sess_",
        "01J0Z6Q4D5N4W8R9M3S2T1V0XY",  # no prefix
        "SESS_01J0Z6Q4D5N4W8R9M3S2T1V0XY",
        "sess_01j0z6q4d5n4w8r9m3s2t1v0xy",  # ids are case-sensitive
        "sess_01J0Z6Q4D5N4W8R9M3S2T1V0X",  # 25 chars
        "sess_01J0Z6Q4D5N4W8R9M3S2T1V0XYZ",  # 27 chars
        "sess_01J0Z6Q4D5N4W8R9M3S2T1V0XI",  # I is not Crockford
        "sess_81J0Z6Q4D5N4W8R9M3S2T1V0XY",  # first char > 7 overflows 128 bits
        "sess_01J0Z6Q4D5N4W8R9M3S2T1V0XY\n",
    ],
)
def test_is_session_id_rejects(value: str) -> None:
    assert not is_session_id(value)


def test_unique_and_sorted_in_creation_order() -> None:
    ids = [new_session_id() for _ in range(20_000)]  # many share a millisecond
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids


def test_unique_across_threads() -> None:
    results: list[list[str]] = [[] for _ in range(4)]

    def work(out: list[str]) -> None:
        out.extend(new_session_id() for _ in range(2_000))

    threads = [threading.Thread(target=work, args=(r,)) for r in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    merged = [sid for r in results for sid in r]
    assert len(merged) == 8_000
    assert len(set(merged)) == 8_000
    for r in results:
        assert sorted(r) == r


def test_encoding_of_known_values() -> None:
    zero = UlidGenerator(clock_ms=lambda: 0, random_bits=lambda n: 0)
    assert zero.new() == "0" * 26
    top = UlidGenerator(clock_ms=lambda: (1 << 48) - 1, random_bits=lambda n: (1 << n) - 2)
    assert top.new() == "7" + "Z" * 24 + "Y"
    assert top.new() == "7" + "Z" * 25


def test_same_millisecond_increments_random_part() -> None:
    gen = UlidGenerator(clock_ms=lambda: 1_000, random_bits=lambda n: 41)
    a, b, c = gen.new(), gen.new(), gen.new()
    assert a[:10] == b[:10] == c[:10]  # same 48-bit timestamp
    assert a < b < c
    assert decode(b) - decode(a) == 1 and decode(c) - decode(b) == 1
    assert ulid_timestamp_ms(a) == 1_000


def test_clock_going_back_keeps_order() -> None:
    clock = iter([5_000, 4_000, 3_000, 6_000])
    gen = UlidGenerator(clock_ms=lambda: next(clock))
    ids = [gen.new() for _ in range(4)]
    assert sorted(ids) == ids
    assert [ulid_timestamp_ms(i) for i in ids] == [5_000, 5_000, 5_000, 6_000]


def test_random_overflow_borrows_next_millisecond() -> None:
    gen = UlidGenerator(clock_ms=lambda: 7_000, random_bits=lambda n: (1 << n) - 1)
    first, second = gen.new(), gen.new()
    assert first < second
    assert ulid_timestamp_ms(first) == 7_000
    assert ulid_timestamp_ms(second) == 7_001


def test_ulid_timestamp_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        ulid_timestamp_ms("sess_short")
    with pytest.raises(ValueError):
        ulid_timestamp_ms("sess_" + "U" * 26)


def test_token_is_urlsafe_and_long_enough() -> None:
    tokens = {new_token() for _ in range(1_000)}
    assert len(tokens) == 1_000
    for token in list(tokens)[:50]:
        assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        assert len(raw) * 8 >= 128
