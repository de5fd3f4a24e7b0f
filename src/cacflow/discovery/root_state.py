"""A cheap fingerprint of a cohort root's folder tree, so new data re-trigger discovery.

Arriving data change the modification time of the folder they land in: a new participant changes the root, a new
study its participant folder, a new series its study folder, new files their series folder. Hashing the folders'
names and modification times down to a depth therefore notices arrivals without opening a DICOM file. It is
stat-only and cheap (about 300,000 folders for an NLST-size root at depth 3) and imports nothing heavy, because
the workflow evaluates it while building its job graph.

What it cannot see: a file replaced in place under the same name (its folder's mtime does not change). Force
discovery for that (``snakemake --forcerun discover``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def root_state(root: Path | str, depth: int = 3) -> str:
    """SHA-256 over (relative path, mtime in ns) of ``root`` and every folder below it down to ``depth`` levels
    (1: participant folders; 3: participant/study/series). ``"missing"`` when the root does not exist yet."""
    root = Path(root)
    if not root.is_dir():
        return "missing"
    digest = hashlib.sha256()
    level: list[tuple[str, str]] = [("", os.fspath(root))]
    digest.update(f".:{os.stat(root).st_mtime_ns}\n".encode())
    for _ in range(depth):
        below: list[tuple[str, str]] = []
        for rel, path in level:
            try:
                entries = sorted((e for e in os.scandir(path) if e.is_dir(follow_symlinks=True)),
                                 key=lambda e: e.name)
            except OSError:
                continue
            for e in entries:
                name = f"{rel}/{e.name}" if rel else e.name
                digest.update(f"{name}:{e.stat(follow_symlinks=True).st_mtime_ns}\n".encode())
                below.append((name, e.path))
        level = below
    return digest.hexdigest()
