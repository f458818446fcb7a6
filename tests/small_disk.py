"""A real, small file system for disk-full tests: a tmpfs of a few MB, mounted in a private mount
namespace, so nothing is mounted on the host and no root is needed where unprivileged user
namespaces are allowed (Debian's default; as root they are not needed).

    disk = SmallDisk(tmp_path / "disk", size_kb=2048).start()   # a holder process owns the mount
    process = disk.popen([sys.executable, "tests/disk_worker.py", "--data-dir", disk.inside("data")])
    disk.fill()                 # a ballast file takes every free byte: the disk is full
    disk.free()                 # ballast removed
    disk.outside("data")        # the same folder as the test process sees it
    disk.stop()                 # the holder ends; the tmpfs and everything on it are gone

Processes started with `popen` run inside the namespace (nsenter) and see the tmpfs at the mount
point itself (`inside`), across restarts of those processes. The test reaches it through the
holder's root (`/proc/<pid>/root/<mount point>`, `outside`): plain file I/O works there (SQLite
does not: it resolves that symlink to the host path, so the code under test runs in a child).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

HOLDER = """
import os, subprocess, sys
mount, size_kb = sys.argv[1], sys.argv[2]
subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k,mode=0777", "tmpfs", mount], check=True)
open(os.path.join(mount, ".mounted"), "w").close()
sys.stdin.read()  # until the test closes our stdin (or dies)
"""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} (util-linux) is needed for the disk-full tests")
    return path


class SmallDisk:
    def __init__(self, mount: Path, size_kb: int = 2048) -> None:
        self.mount = Path(mount)
        self.mount.mkdir(parents=True, exist_ok=True)
        self.size_kb = size_kb
        self.holder: subprocess.Popen | None = None
        self._as_user = os.geteuid() != 0

    def start(self) -> SmallDisk:
        user = ["--user", "--map-root-user"] if self._as_user else []
        self.holder = subprocess.Popen(
            [_tool("unshare"), *user, "--mount", "--propagation", "private", sys.executable, "-c", HOLDER,
             str(self.mount), str(self.size_kb)], stdin=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while not (self.outside() / ".mounted").exists():
            if self.holder.poll() is not None:
                pytest.fail(f"could not mount a tmpfs in a private namespace (exit {self.holder.returncode}); "
                            "these tests need unprivileged user namespaces or root")
            if time.monotonic() > deadline:
                pytest.fail("the tmpfs was not mounted within 30 s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.holder is not None and self.holder.poll() is None:
            self.holder.stdin.close()
            try:
                self.holder.wait(10)
            except subprocess.TimeoutExpired:
                self.holder.kill()
                self.holder.wait(10)

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        """Run `argv` inside the namespace, where the tmpfs is mounted at `self.mount`."""
        assert self.holder is not None
        user = ["--user", "--preserve-credentials"] if self._as_user else []
        return subprocess.Popen([_tool("nsenter"), "--target", str(self.holder.pid), *user, "--mount", "--", *argv],
                                **kwargs)

    def inside(self, *parts: str) -> str:
        return str(self.mount.joinpath(*parts))

    def outside(self, *parts: str) -> Path:
        assert self.holder is not None
        return Path(f"/proc/{self.holder.pid}/root") / str(self.mount).lstrip("/") / Path(*parts)

    def free_bytes(self) -> int:
        stats = os.statvfs(self.outside())
        return stats.f_bavail * stats.f_frsize

    def fill(self, name: str = "ballast", timeout: float = 30.0) -> None:
        """Take every free byte with a ballast file (tmpfs allocates whole pages).

        A gateway running on the disk may hand space back while the ballast grows (its outbox's
        WAL truncated once the queue empties, a half-written picture or clip removed after the
        disk refused it), so the ballast is topped up until the disk is seen full, not written once.
        """
        deadline = time.monotonic() + timeout
        with open(self.outside(name), "ab", buffering=0) as ballast:
            while True:
                for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 9):
                    try:
                        while True:
                            ballast.write(b"\0" * chunk)
                    except OSError:
                        continue
                if self.free_bytes() < 4096:
                    return
                assert time.monotonic() < deadline, f"{self.free_bytes()} bytes still free after {timeout} s of filling"

    def free(self, name: str = "ballast") -> None:
        self.outside(name).unlink(missing_ok=True)
