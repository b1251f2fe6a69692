"""/docs works without internet: the real daemon serves Swagger UI's files itself (under
/docs/static, from the fastapi-offline package), and headless Chromium, barred from every host
but this one, draws the API's operations from them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.e2e.daemon_process import DaemonProcess, is_ready, wait_for, write_config
from tests.servers.ports import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.timeout(240)


def test_docs_load_their_assets_from_the_daemon(
    tmp_path: Path, processes: list[DaemonProcess]
) -> None:
    port = free_port()
    daemon = DaemonProcess(write_config(tmp_path, port), port, tmp_path / "daemon.log")
    processes.append(daemon)
    wait_for(daemon, "/readyz 200", lambda: is_ready(daemon), timeout=90)

    for page in ("/docs", "/redoc"):
        html = daemon.http.get(page).text
        sources = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert sources, html
        for source in sources:
            assert source.startswith("/docs/static/"), f"{page} loads {source} from elsewhere"
            answer = daemon.http.get(source)
            assert answer.status_code == 200, source
            assert len(answer.content) > 1000, source
    assert (
        "javascript" in daemon.http.get("/docs/static/swagger-ui-bundle.js").headers["content-type"]
    )

    if CHROMIUM is None:
        pytest.skip("chromium is not installed: `make test` installs it (apt-get install chromium)")
    # Every host name resolves to nothing but 127.0.0.1: a CDN could not be reached.
    flags = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'chromium'}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--virtual-time-budget=15000", "--window-size=1280,1600",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}/docs"
    shot = tmp_path / "docs.png"
    subprocess.run([*flags, f"--screenshot={shot}", url], capture_output=True, timeout=90,
                   check=True)  # fmt: skip
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=90,
                         check=True).stdout  # fmt: skip
    # Swagger UI drew the operations: one opblock per path and method of the OpenAPI schema.
    schema = daemon.http.get("/openapi.json").json()
    operations = sum(len(methods) for methods in schema["paths"].values())
    assert dom.count('class="opblock opblock-') == operations, dom[:2000]
    for path in ("/healthz", "/readyz", "/metrics"):
        assert f'data-path="{path}"' in dom
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert float((pixels < 230).mean()) > 0.02, "the page is blank"
    print(f"screenshot: {shot}")
