"""Another revision's `hub`, for a benchmark to run beside this tree's."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def extract_hub(revision: str, into: Path) -> Path:
    """`revision`'s `hub` package written under `into` (made if missing), with `git
    archive`; returns `into`, to put first on a process's path."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "hub"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into
