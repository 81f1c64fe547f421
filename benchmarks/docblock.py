"""Rewrite one marked block of a Markdown page (what each benchmark's --write-docs does)."""

from __future__ import annotations

from pathlib import Path


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
