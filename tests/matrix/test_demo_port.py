"""The demo keeps its homeserver's port across reruns, even while old connections to it
linger in TIME_WAIT: a new port meant a new address for the stored session."""

from __future__ import annotations

import socket

from kumix.app.demo import _port_if_bindable


def test_a_port_in_time_wait_is_reused_and_a_port_in_use_is_not() -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    assert _port_if_bindable(port) != port, "a listening port must count as taken"
    # The server side closes first, as Synapse does on shutdown: its end enters TIME_WAIT.
    accepted.close()
    server.close()
    client.close()
    plain = socket.socket()
    try:
        plain.bind(("127.0.0.1", port))
        lingering = False
    except OSError:
        lingering = True  # the old probe (no SO_REUSEADDR) would have moved the demo
    finally:
        plain.close()
    assert _port_if_bindable(port) == port
    assert lingering, "the connection did not linger: this test would not show the difference"
