"""Real faults for the fault-injection tests: a small tmpfs that a filler file makes full (disk
full, ENOSPC), and a soft limit on open files (EMFILE).

Mounting needs root with CAP_SYS_ADMIN; elsewhere (not root, an unprivileged container) the
tests that need a full disk are skipped and say why.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

_CHUNK = 1 << 20


def mount_tmpfs(path: Path, size: str) -> None:
    """Mount a tmpfs of `size` (e.g. "16m") at `path`, or skip the test with the reason."""
    if os.geteuid() != 0:
        pytest.skip("disk-full tests mount a small tmpfs, which needs root: run them as root")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("disk-full tests need mount(8) and umount(8) (util-linux)")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(
            "disk-full tests mount a small tmpfs, and mounting is not permitted here (an "
            f"unprivileged container?): {done.stderr.strip() or done.returncode}"
        )


def unmount(path: Path) -> None:
    """Unmount `path`; lazily if something still holds a file there (a killed process)."""
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    mount_tmpfs(path, size)
    try:
        yield path
    finally:
        unmount(path)


class Filler:
    """A file that takes every free block of the file system it is on, until `free()`."""

    def __init__(self, disk: Path) -> None:
        self.path = disk / "filler"

    def fill(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while True:  # a short write takes the last blocks; the next one fails
                try:
                    os.write(fd, b"\0" * _CHUNK)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        finally:
            os.close(fd)
        assert os.statvfs(self.path).f_bavail == 0, "the filler left free blocks"

    def free(self) -> None:
        self.path.unlink()

    def leave(self, size: int) -> None:
        """Give back `size` bytes (rounded up to whole blocks) of what the filler took."""
        block = os.statvfs(self.path).f_frsize
        keep = self.path.stat().st_size - -(-size // block) * block
        os.truncate(self.path, max(0, keep))


@contextlib.contextmanager
def open_files_exhausted() -> Iterator[None]:
    """Within: this process cannot open another file (EMFILE), as when its RLIMIT_NOFILE is
    reached. The soft limit is lowered to the lowest free descriptor number, then restored."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest = os.dup(0)
    os.close(lowest)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
