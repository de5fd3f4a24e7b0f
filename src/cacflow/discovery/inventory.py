"""Header-only inventory of a cohort root: every file, one row, read in parallel.

Files are listed with ``os.scandir`` (sorted; folders that are symbolic links are followed, since cohort roots on
clusters are often assembled from links, and a folder reached twice, through a loop or two links, is read once),
split into batches and read
with :func:`cacflow.io.dicom.read_headers` under Dask: processes by default, since pydicom's parsing holds the GIL.

A cohort with a ``volumes`` section also reads volume files (NIfTI, NRRD, MetaImage; one series each) with
:func:`cacflow.io.volume_file.read_volume_header`; their sidecar JSON and detached pixel data files are not
inventoried as files of their own.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import dask
import dask.bag as db
import pandas as pd

from cacflow.io.dicom import FILE_HEADER_FIELDS, read_headers
from cacflow.io.volume_file import companion_files, is_volume_file, read_volume_headers
from cacflow.progress import Progress

log = logging.getLogger(__name__)


def list_files(root: Path) -> list[Path]:
    """All regular files below ``root`` in a deterministic (sorted) order; hidden files and folders skipped.

    Folders that are symbolic links are followed. Each real folder (device, inode) is listed once: a link that
    loops back to a folder above it, or a second link to a folder already listed, is skipped with a warning.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"cohort root {root} does not exist or is not a directory; fix 'root' in the config")
    out: list[Path] = []
    stack = [root]
    root_stat = root.stat()
    seen = {(root_stat.st_dev, root_stat.st_ino)}
    while stack:
        d = stack.pop()
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            log.warning("cannot list %s: %s", d, exc.strerror)
            continue
        subdirs = []
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                is_dir = e.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                st = e.stat(follow_symlinks=True)
                if (st.st_dev, st.st_ino) in seen:
                    log.warning("skipping %s: a symbolic link to a folder already read (a loop or a second link)",
                                e.path)
                    continue
                seen.add((st.st_dev, st.st_ino))
                subdirs.append(Path(e.path))
            elif e.is_file():
                out.append(Path(e.path))
        stack.extend(reversed(subdirs))
    return out


def split_volume_files(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """(volume files, the other files) of a listing; a volume file's sidecar and pixel data files are in neither."""
    volumes = [p for p in files if is_volume_file(p)]
    companions = {c for v in volumes for c in companion_files(v)}
    return volumes, [p for p in files if p not in companions and not is_volume_file(p)]


def inventory(root: Path, workers: int = 1, batch_size: int = 256, scheduler: str | None = None,
              volumes: dict | None = None) -> pd.DataFrame:
    """Read the header of every file below ``root`` (no pixel data) into a DataFrame, one row per file.

    Args:
        root: cohort root folder.
        workers: parallel workers.
        batch_size: files per task.
        scheduler: Dask scheduler ('processes', 'threads', 'synchronous'); by default processes when there are
            several workers and enough files to amortise the worker start-up, else synchronous.
        volumes: the cohort's ``volumes`` section (``{"defaults": {...}}``) to read volume files too; None reads
            every file as DICOM.
    """
    root = Path(root)
    files = list_files(root)
    volume_files: list[Path] = []
    if volumes is not None:
        volume_files, files = split_volume_files(files)
    log.info("inventory of %s: %d files%s", root.name, len(files) + len(volume_files),
             f" ({len(volume_files)} volume files)" if volumes is not None else "")
    batches = [files[i:i + batch_size] for i in range(0, len(files), batch_size)]
    if scheduler is None:
        scheduler = "processes" if workers > 1 and len(files) >= 4 * batch_size else "synchronous"
    rows: list[dict] = []
    if batches:
        bag = db.from_sequence(batches, npartitions=len(batches)).map(read_headers, root)
        with Progress(len(batches), "inventory"):
            results = dask.compute(bag, scheduler=scheduler, num_workers=max(1, workers))[0]
        for batch in results:
            rows.extend(batch)
    if volume_files:
        rows = sorted(rows + read_volume_headers(volume_files, root, (volumes or {}).get("defaults")),
                      key=lambda r: r["path"])
    frame = pd.DataFrame(rows, columns=list(FILE_HEADER_FIELDS))
    return frame
