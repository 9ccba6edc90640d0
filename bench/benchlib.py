"""What the benchmark scripts share: wrk, and starting and stopping the processes measured."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ensure_wrk() -> str:
    if not shutil.which("wrk"):
        print("bench: installing wrk (Debian package)")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)
    return shutil.which("wrk") or "wrk"


def start(args: list[str], log: Path, *, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A process of the project, run from the repository root, its output in `log`."""
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM (workers finish their batch), then SIGKILL after a minute."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
