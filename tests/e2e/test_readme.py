"""README.md's runnable command blocks, run as a newcomer would, so the README cannot drift from
what the package does.

A block is runnable when the line before its ```console fence is `<!-- runnable -->` (DESIGN.md,
conventions). In it, `$ ` starts a command (a line ending in `\\` continues it); the lines after
a command are output it must print, each in that order (`...` stands for anything). Every
command must exit 0. `<!-- runnable until="TEXT" timeout=S -->` is for a command that runs until
stopped (the daemon): it is run until its output shows TEXT (within S seconds), then stopped
with Ctrl-C (SIGINT), and must then stop cleanly (exit 0 or 130, no traceback).

All blocks run in order in one temporary folder holding what a clone has (rules.yaml, examples/,
deploy/), with the installed package's commands first on PATH, so a block may use what an
earlier one wrote (the demo's bundles).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.daemon_process import environment
from tests.servers.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARKER = re.compile(r"<!--\s*runnable(?P<options>[^>]*?)\s*-->")
OPTION = re.compile(r'(\w+)=(?:"([^"]*)"|(\S+))')
COPIED = ("rules.yaml", "examples", "deploy")
# Programs some blocks use that not every machine has: those blocks are skipped without them.
OPTIONAL = {"helm": "`make helm` installs it on linux-amd64"}

pytestmark = pytest.mark.timeout(900)


@dataclass
class Command:
    text: str
    expected: list[str] = field(default_factory=list)


@dataclass
class Block:
    line: int  # of the fence, 1-based, for messages
    commands: list[Command]
    until: str | None = None
    timeout: float = 120.0

    @property
    def name(self) -> str:
        return f"README.md:{self.line}"


def runnable_blocks(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks: list[Block] = []
    for i, line in enumerate(lines):
        marker = MARKER.fullmatch(line.strip())
        if not marker:
            continue
        fence = lines[i + 1].strip() if i + 1 < len(lines) else ""
        assert fence == "```console", (
            f"README.md:{i + 1}: <!-- runnable --> must be followed by a ```console block"
        )
        options = {m[1]: m[2] or m[3] for m in OPTION.finditer(marker.group("options"))}
        unknown = set(options) - {"until", "timeout"}
        assert not unknown, f"README.md:{i + 1}: unknown runnable option(s) {sorted(unknown)}"
        body: list[str] = []
        for inner in lines[i + 2 :]:
            if inner.strip() == "```":
                break
            body.append(inner)
        blocks.append(
            Block(
                i + 2,
                parse_commands(body, i + 2),
                options.get("until"),
                float(options.get("timeout", 120)),
            )
        )
    return blocks


def parse_commands(body: list[str], line: int) -> list[Command]:
    commands: list[Command] = []
    continued = False
    for text in body:
        if continued:
            commands[-1].text += "\n" + text
        elif text.startswith("$ "):
            commands.append(Command(text[2:]))
        elif text.strip() and text.strip() != "...":
            assert commands, f"README.md:{line}: output before the first `$ ` command"
            commands[-1].expected.append(text.strip())
        continued = (continued or text.startswith("$ ")) and text.endswith("\\")
    assert commands, f"README.md:{line}: a runnable block without a `$ ` command"
    return commands


def check_output(block: Block, command: Command, output: str) -> None:
    """Each expected line in the output, in order."""
    at = 0
    for expected in command.expected:
        found = output.find(expected, at)
        assert found >= 0, (
            f"{block.name}: `{command.text}` did not print {expected!r} "
            f"(after what matched before). It printed:\n{output}"
        )
        at = found + len(expected)


def copy_of_a_clone(folder: Path) -> Path:
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name)
        else:
            shutil.copy(source, folder / name)
    return folder


def env() -> dict[str, str]:
    """No cluster (dry run), the package's commands first on PATH, a free port for the daemon."""
    bin_dir = str(Path(sys.executable).parent)
    return environment(
        PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""),
        MLWATCHDOG_PORT=str(free_port()),
        COLUMNS="200",  # tables as wide as they need (rich reads it)
    )


def run_until(block: Block, command: Command, cwd: Path) -> str:
    """Run `command` until its output shows block.until, then Ctrl-C; its whole output."""
    assert block.until is not None
    log = cwd / f"readme-{block.line}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {command.text}"],
            cwd=cwd,
            env=env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + block.timeout
            while block.until not in log.read_text(errors="replace"):
                if proc.poll() is not None:
                    pytest.fail(
                        f"{block.name}: `{command.text}` exited ({proc.returncode}) before "
                        f"printing {block.until!r}:\n{log.read_text(errors='replace')}"
                    )
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"{block.name}: `{command.text}` did not print {block.until!r} within "
                        f"{block.timeout:g}s:\n{log.read_text(errors='replace')}"
                    )
                time.sleep(0.5)
            proc.send_signal(signal.SIGINT)  # Ctrl-C
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    output = log.read_text(errors="replace")
    # Stopped cleanly: 0, or 130 (128 + SIGINT, what a shell reports for Ctrl-C), no traceback.
    assert code in (0, 130), f"{block.name}: `{command.text}` exited {code} on Ctrl-C:\n{output}"
    assert "Traceback" not in output, f"{block.name}: a traceback on Ctrl-C:\n{output}"
    return output


def run(block: Block, command: Command, cwd: Path) -> str:
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command.text],
        cwd=cwd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=block.timeout,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, (
        f"{block.name}: `{command.text}` exited {done.returncode}:\n{output}"
    )
    return output


BLOCKS = runnable_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_runnable_blocks() -> None:
    assert len(BLOCKS) >= 4, "README.md lost its <!-- runnable --> blocks"


def test_the_runnable_blocks_run_as_shown(tmp_path: Path) -> None:
    """One test, in README order: a block may use what an earlier one wrote."""
    workdir = copy_of_a_clone(tmp_path)
    path = env()["PATH"]
    for block in BLOCKS:
        program = block.commands[0].text.split()[0]
        if program in OPTIONAL and shutil.which(program, path=path) is None:
            print(f"{block.name}: skipped, no {program} ({OPTIONAL[program]})")
            continue
        for i, command in enumerate(block.commands):
            if block.until is not None and i == len(block.commands) - 1:
                output = run_until(block, command, workdir)
            else:
                output = run(block, command, workdir)
            check_output(block, command, output)


def test_the_parser_reads_commands_output_and_options() -> None:
    text = "\n".join(
        [
            '<!-- runnable until="listening" timeout=30 -->',
            "```console",
            "$ mlwatchdog check \\",
            "    rules.yaml",
            "Checking rules.yaml",
            "...",
            "  SUCCESS",
            "$ ls",
            "```",
            "```console",
            "$ not marked",
            "```",
        ]
    )
    [block] = runnable_blocks(text)
    assert block.until == "listening" and block.timeout == 30
    assert [c.text for c in block.commands] == ["mlwatchdog check \\\n    rules.yaml", "ls"]
    assert block.commands[0].expected == ["Checking rules.yaml", "SUCCESS"]
    with pytest.raises(AssertionError, match="did not print 'SUCCESS'"):
        check_output(block, block.commands[0], "SUCCESS\nChecking rules.yaml")
