"""The client library against a scripted server: each request accepts only the reply type the
protocol gives it. A reply of another type is `unexpected_reply`, and closes the connection."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import recv_body
from test_cli_support import execution

from wfmctl import WfmError, protocol
from wfmctl.client import UNEXPECTED_REPLY, Client

TIMEOUT = 10.0


@pytest.fixture
def scripted(tmp_path: Path) -> Iterator[tuple[Path, list[protocol.Response]]]:
    """A socket path, and the list of replies a one-connection server sends, one per request,
    after its hello. Fill the list before connecting."""
    path = tmp_path / "scripted.sock"
    replies: list[protocol.Response] = []
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    listener.settimeout(TIMEOUT)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            conn.sendall(protocol.encode_frame(protocol.Hello(protocol=1, daemon_version="t")))
            for reply in replies:
                protocol.decode_request(recv_body(conn))
                conn.sendall(protocol.encode_frame(reply))
            while conn.recv(1 << 16):  # until the client hangs up
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, replies
    thread.join(TIMEOUT)
    listener.close()
    assert not thread.is_alive()


def test_cancel_returns_the_status_reply(scripted: tuple[Path, list[protocol.Response]]) -> None:
    path, replies = scripted
    running = execution("Running", ended_at=None)
    replies.append(protocol.StatusReply(execution=running))
    with Client(path, timeout=TIMEOUT) as client:
        assert client.cancel("a1b2c3") == running
        assert not client.closed


@pytest.mark.parametrize("reply_type", [protocol.Finished, protocol.Accepted])
def test_cancel_refuses_other_replies_that_carry_an_execution(
    scripted: tuple[Path, list[protocol.Response]],
    reply_type: type[protocol.Finished] | type[protocol.Accepted],
) -> None:
    path, replies = scripted
    replies.append(reply_type(execution=execution("Cancelled")))
    with Client(path, timeout=TIMEOUT) as client:
        with pytest.raises(WfmError) as info:
            client.cancel("a1b2c3")
        assert info.value.code == UNEXPECTED_REPLY
        assert "'status'" in info.value.message
        assert client.closed
