"""What machine a figure was measured on."""

from __future__ import annotations

import os
import platform
import subprocess


def machine() -> dict[str, object]:
    redis = ""
    try:
        out = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, timeout=5
        ).stdout
        redis = out.split("v=")[1].split()[0] if "v=" in out else out.strip()
    except (OSError, subprocess.SubprocessError):
        redis = "unknown"
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "redis": redis,
    }
