"""Parquet and JSON files written atomically (temporary sibling, fsync, rename)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")


def write_parquet(frame: pd.DataFrame, path: Path, metadata: dict | None = None) -> Path:
    """Write ``frame`` to ``path`` atomically; ``metadata`` goes as JSON under the schema key ``cacflow``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if metadata is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               b"cacflow": json.dumps(metadata, sort_keys=True, default=str).encode()})
    tmp = _tmp(path)
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_parquet_if_changed(frame: pd.DataFrame, path: Path, metadata: dict | None = None) -> bool:
    """Write ``frame`` like :func:`write_parquet` unless ``path`` already holds the same bytes; True when written.

    A file whose content is unchanged keeps its modification time, so the workflow jobs that read it do not rerun.
    """
    path = Path(path)
    tmp = write_parquet(frame, _tmp(path), metadata)
    try:
        if path.exists() and path.read_bytes() == tmp.read_bytes():
            return False
        os.replace(tmp, path)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(data: bytes, path: Path) -> Path:
    """Write bytes atomically (temporary sibling, fsync, rename): a file at ``path`` is always complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(obj, path: Path) -> Path:
    """Write JSON atomically."""
    return write_bytes(json.dumps(obj, indent=1, sort_keys=True, default=str).encode("utf-8"), path)


def write_text(text: str, path: Path) -> Path:
    """Write UTF-8 text atomically."""
    return write_bytes(text.encode("utf-8"), path)


def read_json(path: Path):
    """Read JSON, or None when the file does not exist."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None
