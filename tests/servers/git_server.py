"""A real git repository served on loopback: by `git daemon` (git://, push enabled, no
authentication), or over HTTP by git's own `git http-backend` (the smart HTTP protocol, a CGI
program) behind a small server that asks for a token as GitHub and GitLab do: HTTP Basic with the
token as the password (`x-access-token:<token>`, `oauth2:<token>`), 401 otherwise."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.servers.ports import free_port


class GitServer:
    def __init__(self, root: Path, name: str = "ml/manifests.git") -> None:
        self.root, self.name = root, name
        self.bare = root / name
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"git://127.0.0.1:{self.port}/{self.name}"

    def init(self, files: dict[str, str], branch: str = "main") -> None:
        """A bare repository whose `branch` has one commit with `files`."""
        work = self.root / "seed"
        run = lambda *a, cwd=work: subprocess.run(["git", *a], cwd=cwd, check=True,  # noqa: E731
                                                 capture_output=True)  # fmt: skip
        work.mkdir(parents=True)
        run("init", "-q", "-b", branch)
        for path, text in files.items():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_text(text)
        run("add", ".")
        run("-c", "user.name=ops", "-c", "user.email=ops@example.com", "commit", "-qm", "models")
        run("clone", "-q", "--bare", str(work), str(self.bare), cwd=self.root)

    def show(self, ref: str, path: str) -> str:
        return subprocess.run(
            ["git", f"--git-dir={self.bare}", "show", f"{ref}:{path}"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip

    def branches(self) -> list[str]:
        out = subprocess.run(
            ["git", f"--git-dir={self.bare}", "for-each-ref", "--format=%(refname:short)",
             "refs/heads"], check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        return sorted(out.split())

    def __enter__(self) -> GitServer:
        self.process = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", f"--base-path={self.root}", "--export-all",
             "--enable=receive-pack", "--listen=127.0.0.1", f"--port={self.port}", str(self.root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until it accepts connections
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("git daemon did not start")

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(5)


HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"


class GitHttpServer(GitServer):
    """The repository over HTTP (`git http-backend`), every request needing `token` (a private
    repository), or, with `public_read`, only pushes (a public one). `authorizations` records
    (method, path, what the Authorization header was: `none`, `right`, `wrong`) per request,
    `refused` the requests answered 401 (method, path?query)."""

    def __init__(
        self, root: Path, token: str, name: str = "ml/manifests.git", public_read: bool = False
    ) -> None:
        super().__init__(root, name)
        self.token, self.public_read = token, public_read
        self.authorizations: list[tuple[str, str, str]] = []
        self.refused: list[tuple[str, str]] = []
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/{self.name}"

    def _authorization(self, header: str | None) -> str:
        if not header:
            return "none"
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return "wrong"
        try:
            _user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return "wrong"
        return "right" if password == self.token else "wrong"

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        push = parts.path.endswith("/git-receive-pack") or "service=git-receive-pack" in parts.query
        seen = self._authorization(h.headers.get("Authorization"))
        self.authorizations.append((method, parts.path, seen))
        body = self._body(h) if method == "POST" else b""
        if seen != "right" and (push or not self.public_read):
            self.refused.append((method, h.path))
            h.send_response(401)
            h.send_header("WWW-Authenticate", 'Basic realm="manifests"')
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "REQUEST_METHOD": method,
            "PATH_INFO": parts.path,
            "QUERY_STRING": parts.query,
            "CONTENT_TYPE": h.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_USER": "token" if seen == "right" else "",  # receive-pack needs a user
            "GIT_PROTOCOL": h.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": h.headers.get("Content-Encoding", ""),
        }
        done = subprocess.run(
            [HTTP_BACKEND], input=body, env=env, capture_output=True, timeout=60, check=False
        )
        out = done.stdout
        cut = b"\r\n\r\n" if b"\r\n\r\n" in out else b"\n\n"
        head, _, payload = out.partition(cut)
        headers = [line.split(":", 1) for line in head.decode().splitlines() if ":" in line]
        status = next((v.strip() for k, v in headers if k.lower() == "status"), "200 OK")
        h.send_response(int(status.split()[0]))
        for key, value in headers:
            if key.lower() not in ("status", "content-length"):
                h.send_header(key, value.strip())
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    @staticmethod
    def _body(h: BaseHTTPRequestHandler) -> bytes:
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(h.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    h.rfile.readline()
                    return b"".join(chunks)
                chunks.append(h.rfile.read(size))
                h.rfile.readline()
        return h.rfile.read(int(h.headers.get("Content-Length") or 0))

    def __enter__(self) -> GitHttpServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer._handle(self, "GET")

            def do_POST(self) -> None:
                outer._handle(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
