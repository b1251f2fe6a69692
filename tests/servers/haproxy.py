"""haproxy (Debian) for tests: several daemons behind one loopback address, round robin per
request, as a Kubernetes Service spreads a client's requests over its pods."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.servers.ports import free_port
from tests.servers.process import serving


@contextmanager
def round_robin(backends: Sequence[int], folder: Path) -> Iterator[int]:
    """haproxy on a free loopback port in front of the loopback ports `backends`; yields its
    port. A backend that stops answering is out after one failed health check (200 ms apart);
    until then a refused connection is retried on another backend, and a request it held fails
    (502), as one a killed pod held."""
    command = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(command).is_file():
        pytest.skip("haproxy not found; run `make servers` as root (apt-get install haproxy)")
    port = free_port()
    servers = "\n".join(
        f"    server b{i} 127.0.0.1:{backend} check inter 200ms fall 1 rise 1"
        for i, backend in enumerate(backends)
    )
    config = folder / "haproxy.cfg"
    config.write_text(
        f"""global
    maxconn 256
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    # A connection the dead backend refuses never carried the request: haproxy sends it to
    # another (as a Service stops sending to a pod); a request it held fails (502), unanswered.
    retries 2
    option redispatch
frontend sink
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /healthz
{servers}
"""
    )
    with serving([command, "-db", "-f", str(config)], f"http://127.0.0.1:{port}/healthz",
                 folder / "haproxy.log"):  # fmt: skip
        yield port
