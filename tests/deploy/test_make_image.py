"""`make image`: builds deploy/Dockerfile with docker or podman, tagged <version> and <git commit>;
without an engine it says so and fails. No container engine runs here, so the build itself is
checked by what the Makefile asks the engine to do (a recording engine, CONTAINER_ENGINE); the
Dockerfile's content is tests/deploy/test_dockerfile.py's subject."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.deploy.manifests import REPO

MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="no make")


def make_image(tmp_path: Path, path: str, **env: str) -> subprocess.CompletedProcess[str]:
    assert MAKE is not None
    return subprocess.run(
        [MAKE, "-s", "--no-print-directory", "image", *[f"{k}={v}" for k, v in env.items()]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": path},
    )


def tools_only(tmp_path: Path) -> str:
    """A PATH with the shell tools the recipe uses, and no docker or podman."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("sh", "sed", "git", "echo", "cat"):
        found = shutil.which(tool)
        if found:
            (folder / tool).symlink_to(found)
    return str(folder)


def test_without_docker_or_podman_it_says_so_and_fails(tmp_path: Path) -> None:
    done = make_image(tmp_path, tools_only(tmp_path))
    assert done.returncode != 0
    assert "neither docker nor podman is installed" in done.stderr


def engine(tmp_path: Path, reachable: bool) -> Path:
    """An engine that records each call's arguments; `info` fails unless reachable."""
    script = tmp_path / "engine"
    calls = tmp_path / "calls"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        f'[ "$1" = info ] && exit {0 if reachable else 1}\n'
        "exit 0\n"
    )
    script.chmod(0o755)
    return script


def test_an_engine_it_cannot_reach_is_named(tmp_path: Path) -> None:
    script = engine(tmp_path, reachable=False)
    done = make_image(tmp_path, tools_only(tmp_path), CONTAINER_ENGINE=str(script))
    assert done.returncode != 0
    assert f"{script} is installed but cannot reach its engine" in done.stderr


def test_it_builds_the_dockerfile_tagged_with_version_and_commit(tmp_path: Path) -> None:
    script = engine(tmp_path, reachable=True)
    done = make_image(
        tmp_path,
        tools_only(tmp_path),
        CONTAINER_ENGINE=str(script),
        IMAGE="ghcr.io/acme/mlwatchdog",
    )
    assert done.returncode == 0, done.stderr
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    commit = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    [info, build] = (tmp_path / "calls").read_text().splitlines()
    assert info == "info"
    args = build.split()
    assert args[:3] == ["build", "-f", "deploy/Dockerfile"] and args[-1] == "."
    tags = [args[i + 1] for i, a in enumerate(args) if a == "-t"]
    assert tags[0] == f"ghcr.io/acme/mlwatchdog:{version}"
    assert tags[1] in (
        f"ghcr.io/acme/mlwatchdog:{commit}",
        f"ghcr.io/acme/mlwatchdog:{commit}-dirty",
    )
    assert f"org.opencontainers.image.revision={tags[1].rsplit(':', 1)[1]}" in args
