import asyncio
import socket

import pytest

from sipua.media.udp import ReaderEndpoint, TransportEndpoint, open_endpoint


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


@pytest.mark.parametrize("mode", ["reader", "transport", "auto"])
async def test_send_receive_and_close(mode):
    loop = asyncio.get_running_loop()
    got: list[tuple[bytes, tuple]] = []
    enough = loop.create_future()
    errors = []

    def handler(data, addr):
        got.append((data, addr))
        if len(got) == 200 and not enough.done():
            enough.set_result(None)

    a_sock, b_sock = _socket(), _socket()
    a = await open_endpoint(a_sock, handler, lambda: errors.append(1), mode=mode)
    b = await open_endpoint(b_sock, lambda d, addr: None, lambda: errors.append(1), mode=mode)
    assert isinstance(a, ReaderEndpoint if mode != "transport" else TransportEndpoint)
    target = a_sock.getsockname()
    for i in range(200):  # queued faster than one wake-up per datagram
        b.sendto(i.to_bytes(2, "big"), target)
    await asyncio.wait_for(enough, 5)
    assert [int.from_bytes(d, "big") for d, _ in got] == list(range(200))
    assert {addr for _, addr in got} == {b_sock.getsockname()}
    await a.close()
    await b.close()
    assert a_sock.fileno() == -1 and b_sock.fileno() == -1
    b.sendto(b"late", target)  # after close: ignored, no exception
    assert errors == []


async def test_unknown_mode_is_refused():
    sock = _socket()
    with pytest.raises(ValueError):
        await open_endpoint(sock, lambda d, a: None, lambda: None, mode="magic")
    sock.close()
