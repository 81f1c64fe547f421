"""What every benchmark's report needs: the machine's facts, and its block in the docs."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else ``platform.processor()`` (may be "")."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or ""


def git_commit() -> str:
    """The checkout's short commit hash, or "" where git or the repository is missing."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
            check=False, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def replace_block(path: Path, begin: str, end: str, block: str, section: str) -> None:
    """Replace the text between the ``begin`` and ``end`` markers of ``path`` with ``block``.

    Raises ``ValueError`` naming ``section`` (the heading that should hold the markers) if
    either marker is missing.
    """
    text = path.read_text()
    if begin not in text or end not in text:
        raise ValueError(
            f"{path} has no {begin} ... {end} block: add the '{section}' section with both "
            "markers first."
        )
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{block}\n{end}{tail}")
