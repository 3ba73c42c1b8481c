"""A real reverse proxy for the proxy tests: Debian's nginx (`make nginx`) as a child process, one
loopback server per web process it fronts, cutting an upstream read idle for `read_timeout`."""

import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, until

NGINX = "/usr/sbin/nginx"

CONF = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
    proxy_read_timeout {read_timeout}s;
    proxy_http_version 1.1;
    proxy_buffering on;
{servers}
}}
"""
SERVER = "    server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://127.0.0.1:{upstream}; }} }}"


@contextmanager
def nginx_in_front(directory: Path, upstreams: dict[str, int], *, read_timeout: int):
    """nginx before each of `upstreams` (name → a web process's port), response buffering on as
    by default: {name: the proxy's URL}, once every one answers /healthz through it."""
    if shutil.which(NGINX) is None:
        pytest.fail("nginx is not installed: `make nginx` (Debian's nginx-light)")
    ports = {name: free_port() for name in upstreams}
    servers = "\n".join(SERVER.format(port=ports[name], upstream=port) for name, port in upstreams.items())
    conf = directory / "nginx.conf"
    conf.write_text(CONF.format(dir=directory, read_timeout=read_timeout, servers=servers))
    nginx = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(directory)], stderr=subprocess.PIPE)
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}

    def up() -> bool:
        try:
            return all(httpx.get(f"{url}/healthz", timeout=1).status_code == 200 for url in urls.values())
        except httpx.HTTPError:
            return False

    try:
        assert until(up, timeout=20), nginx.stderr.read1() if nginx.poll() is not None else "nginx not answering"
        yield urls
    finally:
        nginx.terminate(), nginx.wait(10)
