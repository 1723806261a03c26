"""No user enumeration: an unknown user and a wrong password get the same answer in the same time.

The timing is measured on the gate itself (no sockets, whose jitter would drown
microseconds): thousands of interleaved samples of each kind, compared by their
medians. A control with a lookup that takes longer for known users shows that
the same statistic does catch a difference of that size.
"""

from __future__ import annotations

import gc
import random
import statistics
import time

from sipua.service.credentials_store import CredentialDirectory, MemoryCredentialStore
from sipua.ua.security import SecurityGate, SecurityPolicy

from .conftest import answer, peer, request

SAMPLES = 3000
BOUND = 0.25  # generous: the medians of the two kinds differ by less than 25 %


def _gate(directory) -> SecurityGate:
    policy = SecurityPolicy(auth_required=True, overload_lag=0, max_auth_failures=0)
    return SecurityGate(policy, directory, secret=b"s" * 32, wall_clock=lambda: 1_800_000_000.0)


def _directory() -> CredentialDirectory:
    d = CredentialDirectory(MemoryCredentialStore(), default_realm="sipua")
    d.create("trunk", "correct horse")
    return d


def _measure(gate: SecurityGate, requests: dict[str, object]) -> dict[str, list[int]]:
    times: dict[str, list[int]] = {k: [] for k in requests}
    order = [k for k in requests for _ in range(SAMPLES)]
    random.Random(7).shuffle(order)
    source = peer()
    check = gate.check_request
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for kind in order:
            req = requests[kind]
            start = clock()
            decision = check(req, source, 0.0)
            times[kind].append(clock() - start)
            assert decision.status == 403
    finally:
        gc.enable()
    return times


def _requests(gate: SecurityGate) -> dict[str, object]:
    challenge = gate.check_request(request(), peer(), 0.0)
    assert challenge.status == 401
    out = {}
    for kind, (user, password) in {
        "unknown user": ("nobody", "correct horse"),
        "wrong password": ("trunk", "wrong horse"),
    }.items():
        name, value = answer(challenge.headers, username=user, password=password)
        out[kind] = request(headers=[(name, value)])
    return out


def _relative_gap(times: dict[str, list[int]]) -> tuple[float, dict[str, float]]:
    medians = {k: statistics.median(v) for k, v in times.items()}
    a, b = medians.values()
    return abs(a - b) / min(a, b), medians


def test_unknown_user_and_wrong_password_take_the_same_time():
    gate = _gate(_directory())
    times = _measure(gate, _requests(gate))
    gap, medians = _relative_gap(times)
    print(
        f"\nenumeration timing over {SAMPLES} samples each: "
        + ", ".join(f"{k} median {v / 1000:.1f} us" for k, v in medians.items())
        + f"; gap {gap:.1%} (bound {BOUND:.0%})"
    )
    assert gap < BOUND, medians
    assert gate.counters["auth_failures"] == 2 * SAMPLES


def test_the_measurement_does_catch_a_lookup_that_leaks():
    """Control: a directory that works harder for known users is flagged by the same statistic."""
    real = _directory()
    # The leak is sized from this machine's own honest cost, so the control means the same on a
    # fast or a slow machine: known users take 60 % longer (e.g. 40 us more on ~70 us).
    honest = _gate(real)
    base = min(statistics.median(v) for v in _measure(honest, _requests(honest)).values())
    leak_ns = int(0.6 * base)

    class Leaky:
        def find(self, username, realm):
            record = real.find(username, realm)
            if record is not None:
                end = time.perf_counter_ns() + leak_ns  # more work for users that exist
                while time.perf_counter_ns() < end:
                    pass
            return record

    gate = _gate(Leaky())
    times = _measure(gate, _requests(gate))
    gap, medians = _relative_gap(times)
    assert gap > BOUND, medians
