"""deploy/Dockerfile, parsed (Docker cannot run here): base image, non-root user, entrypoint,
healthcheck, and that it agrees with the StatefulSet. The HEALTHCHECK command itself runs against
a local HTTP server."""

from __future__ import annotations

import fnmatch
import http.server
import json
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.manifests import BASE, DEPLOY, REPO, one, render

DOCKERFILE = DEPLOY / "Dockerfile"


@dataclass
class Instruction:
    op: str
    args: str
    line: int

    def exec_form(self) -> list[str]:
        value = json.loads(self.args)
        assert isinstance(value, list), f"line {self.line}: {self.op} is not in exec form"
        return value


def parse(path: Path) -> list[list[Instruction]]:
    """Stages of instructions: continuation lines joined, comments and blank lines dropped."""
    stages: list[list[Instruction]] = [[]]  # instructions before the first FROM: global ARGs
    pending, start = "", 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        op, _, args = (pending + line).partition(" ")
        pending = ""
        instruction = Instruction(op.upper(), args.strip(), start)
        if instruction.op == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    assert not pending, "the Dockerfile ends in a line continuation"
    return stages


@pytest.fixture(scope="module")
def stages() -> list[list[Instruction]]:
    return parse(DOCKERFILE)


def ops(stage: list[Instruction], op: str) -> list[Instruction]:
    return [i for i in stage if i.op == op]


def last(stage: list[Instruction], op: str) -> Instruction:
    found = ops(stage, op)
    assert found, f"no {op} in the stage"
    return found[-1]


def global_args(stages: list[list[Instruction]]) -> dict[str, str]:
    args = {}
    for instruction in stages[0]:
        name, _, default = instruction.args.partition("=")
        args[name] = default.strip('"')
    return args


def test_every_stage_is_python_3_11_slim(stages: list[list[Instruction]]) -> None:
    args = global_args(stages)
    for stage in stages[1:]:
        image = stage[0].args.split()[0]
        if image.startswith("${"):
            image = args[image[2:-1]]
        assert image == "python:3.11-slim", stage[0]


def test_the_build_stage_installs_the_package_from_the_context(
    stages: list[list[Instruction]],
) -> None:
    build = stages[1]
    assert build[0].args.endswith(" AS build")
    runs = " ".join(i.args for i in ops(build, "RUN"))
    assert "pip install ." in runs
    assert "mlwatchdog --help" in runs  # the entry point works in the built environment
    final = stages[-1]
    copied = [i.args for i in ops(final, "COPY")]
    assert any(a.startswith("--from=build ") for a in copied)


def test_the_runtime_runs_as_uid_10001_with_the_daemon_entrypoint(
    stages: list[list[Instruction]],
) -> None:
    final = stages[-1]
    user = last(final, "USER").args
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) == 10001, f"USER {user}: numeric and non-root"
    assert last(final, "ENTRYPOINT").exec_form() == ["mlwatchdog"]
    assert last(final, "CMD").exec_form() == ["run", "--config", "/etc/mlwatchdog/rules.yaml"]
    assert last(final, "EXPOSE").args.split() == ["8080"]
    assert last(final, "WORKDIR").args == "/var/lib/mlwatchdog"
    # The user exists with that UID and owns the writable state directory.
    runs = " ".join(i.args for i in ops(final, "RUN"))
    assert "--uid 10001" in runs and "chown -R 10001:10001 /var/lib/mlwatchdog" in runs
    # USER comes after every RUN: nothing runs as root at run time.
    assert max(i.line for i in ops(final, "RUN")) < last(final, "USER").line


def test_the_container_logs_json_lines_even_with_a_terminal(
    stages: list[list[Instruction]],
) -> None:
    """`mlwatchdog run` logs for a console when stdout is a terminal (`docker run -t`); the
    image asks for JSON lines, what log collectors parse."""
    env = " ".join(i.args for i in ops(stages[-1], "ENV")).split()
    assert "MLWATCHDOG_LOG_FORMAT=json" in env


def healthcheck_command(stages: list[list[Instruction]]) -> list[str]:
    args = last(stages[-1], "HEALTHCHECK").args
    options, _, command = args.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    return list(json.loads(command))


def test_the_healthcheck_uses_python_urllib_on_healthz(stages: list[list[Instruction]]) -> None:
    command = healthcheck_command(stages)
    assert command[:2] == ["python", "-c"]
    assert "urllib.request" in command[2] and "/healthz" in command[2]
    assert "127.0.0.1" in command[2] and "8080" in command[2]
    assert "curl" not in command[2] and "wget" not in command[2]  # not in the slim image


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_the_healthcheck_command_passes_and_fails_like_docker_would(
    stages: list[list[Instruction]], health_server: int
) -> None:
    code = healthcheck_command(stages)[2]
    env = {**os.environ, "MLWATCHDOG_PORT": str(health_server)}
    ok = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=20)
    assert ok.returncode == 0, ok.stderr
    # Nothing listening: a non-zero exit, which Docker counts as unhealthy.
    env["MLWATCHDOG_PORT"] = "1"
    down = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=20)
    assert down.returncode != 0


def test_the_image_agrees_with_the_statefulset(stages: list[list[Instruction]]) -> None:
    final = stages[-1]
    pod = one(render(BASE), "StatefulSet")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    uid, gid = (int(i) for i in last(final, "USER").args.split(":"))
    assert pod["securityContext"]["runAsUser"] == uid
    # The volume is group-owned by fsGroup: the image's group, so the daemon can write there.
    assert pod["securityContext"]["runAsGroup"] == pod["securityContext"]["fsGroup"] == gid
    assert container["args"] == last(final, "CMD").exec_form()
    ports = [p["containerPort"] for p in container["ports"]]
    assert ports == [int(last(final, "EXPOSE").args)]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/etc/mlwatchdog", "/var/lib/mlwatchdog", "/tmp"} <= mounts


# --- .dockerignore ------------------------------------------------------------------------------


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes (for these patterns)."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(p, pattern[3:]) for p in parts)
        else:
            hit = any(fnmatch.fnmatch(p, pattern) for p in prefixes)
        if hit:
            result = not negate
    return result


def test_dockerignore_keeps_what_the_build_copies_and_drops_the_rest(
    stages: list[list[Instruction]],
) -> None:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [p.strip() for p in lines if p.strip() and not p.startswith("#")]
    for instruction in ops(stages[1], "COPY"):
        *sources, _dest = shlex.split(instruction.args)
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
            files = [REPO / source] if (REPO / source).is_file() else (REPO / source).rglob("*.py")
            for file in files:
                rel = file.relative_to(REPO).as_posix()
                assert not ignored(rel, patterns), f"{rel} is copied but .dockerignore drops it"
    for heavy in (".venv/bin/python", ".git/HEAD", "tests/unit/test_ks.py", ".demo/x"):
        assert ignored(heavy, patterns), f"{heavy} would be sent to the Docker daemon"
    assert ignored("mlwatchdog/__pycache__/cli.cpython-311.pyc", patterns)
