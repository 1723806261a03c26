"""The pooled CSPRNG behind tags, branches and Call-IDs (sipua.sip.ids)."""

import os

from sipua.sip import ids


def test_values_are_distinct_across_pool_refills():
    seen = {ids.new_tag() for _ in range(3 * ids._POOL_SIZE // 8)}  # three refills of 8-octet tags
    assert len(seen) == 3 * ids._POOL_SIZE // 8
    assert all(len(t) == 16 and int(t, 16) >= 0 for t in seen)


def test_requests_larger_than_the_pool_and_across_its_end():
    assert len(ids.random_bytes(ids._POOL_SIZE + 1)) == ids._POOL_SIZE + 1
    ids.random_bytes(ids._POOL_SIZE - 3)  # leave a few octets in the pool
    assert len(ids.random_bytes(16)) == 16


def test_a_forked_child_does_not_reuse_the_parents_octets():
    ids.random_bytes(1)  # make sure the pool holds octets the child could copy
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.write(write, ids.random_bytes(32))
        os._exit(0)
    os.close(write)
    child = os.read(read, 32)
    os.close(read)
    os.waitpid(pid, 0)
    parent = ids.random_bytes(32)
    assert len(child) == 32 and child != parent
