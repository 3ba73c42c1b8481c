"""WEB_KEEPALIVE_SECONDS is how long the production web keeps an idle connection for its next
request: above a proxy's idle time (deploy/k8s: 75 s), the proxy never sends a request on a
connection the web is closing (a 502 for its client)."""

import http.client
import time

import pytest

from tests.conftest import WebProcess

KEEPALIVE = 7  # the first idle (4 s) must outlast gunicorn's own 2 s, with room on a loaded machine


def _healthz(connection: http.client.HTTPConnection) -> int:
    connection.request("GET", "/healthz")
    response = connection.getresponse()
    response.read()
    return response.status


@pytest.mark.slow
def test_an_idle_connection_is_kept_for_web_keepalive_seconds_then_closed():
    web = WebProcess(env_overrides={"WEB_KEEPALIVE_SECONDS": str(KEEPALIVE)}).start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", web.port, timeout=30)
        assert _healthz(connection) == 200
        kept = connection.sock
        time.sleep(4)  # past gunicorn's own 2 s
        assert _healthz(connection) == 200
        assert connection.sock is kept  # answered on the same connection, not a new one
        time.sleep(KEEPALIVE + 3)
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            _healthz(connection)  # the web closed it once idle for WEB_KEEPALIVE_SECONDS
        connection.close()
    finally:
        web.stop()
