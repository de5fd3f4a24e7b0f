"""Zarr v3 volume stores, written atomically.

One store per series: a Zarr group holding the array ``hu`` (int16, dimension names ``z, y, x``), sharded as one
shard per volume with one inner chunk per slice and blosc-lz4 + byte shuffle (the fast path measured in
``../shared/research/performance.md`` §3). Geometry and acquisition metadata are group attributes under the key
``cacflow`` (LPS convention, mm), next to an OME-NGFF 0.5 ``multiscales`` entry (scale + translation) for viewers.

Atomicity: the store is written under a temporary sibling name and renamed into place only once complete, so
a store found at its final path is always whole. A crash leaves at most a ``*.tmp-*`` directory, which
:func:`remove_stale_temporaries` clears.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from cacflow.imaging.volume import Geometry, Volume

STORE_FORMAT_VERSION = 1


def _ome_multiscales(volume: Volume) -> list[dict]:
    dz, dy, dx = volume.spacing_zyx
    # OME-NGFF 0.5 cannot express direction cosines; translation is along the array axes.
    return [{
        "name": "hu",
        "axes": [{"name": "z", "type": "space", "unit": "millimeter"},
                 {"name": "y", "type": "space", "unit": "millimeter"},
                 {"name": "x", "type": "space", "unit": "millimeter"}],
        "datasets": [{"path": "hu", "coordinateTransformations": [
            {"type": "scale", "scale": [float(dz), float(dy), float(dx)]},
        ]}],
    }]


def volume_attributes(volume: Volume) -> dict:
    """The JSON attributes stored with a volume: geometry (LPS, mm) and acquisition metadata."""
    return {
        "format_version": STORE_FORMAT_VERSION,
        "axes": ["z", "y", "x"],
        "coordinate_system": "LPS",
        "units": {"hu": "HU", "length": "mm"},
        "spacing_zyx_mm": [float(s) for s in volume.spacing_zyx],
        "origin_lps_mm": [float(o) for o in volume.origin],
        "direction_columns_xyz": np.asarray(volume.direction, dtype=float).tolist(),
        "z_positions_mm": [float(z) for z in volume.z_positions_mm],
        "metadata": volume.metadata,
    }


def write_volume(path: Path, volume: Volume) -> Path:
    """Write ``volume`` as a Zarr v3 group at ``path`` (a directory ending in ``.zarr``), atomically.

    An existing store at ``path`` is replaced only after the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex[:12]}")
    hu = np.ascontiguousarray(volume.hu, dtype=np.int16)
    if hu.ndim != 3:
        raise ValueError(f"volume must be 3-D (z, y, x), got {hu.shape}")
    try:
        group = zarr.open_group(zarr.storage.LocalStore(tmp), mode="w", zarr_format=3)
        group.attrs.update({"cacflow": volume_attributes(volume), "ome": {"version": "0.5",
                                                                          "multiscales": _ome_multiscales(volume)}})
        arr = group.create_array(
            "hu",
            shape=hu.shape,
            dtype="int16",
            chunks=(1, hu.shape[1], hu.shape[2]),
            shards=hu.shape,
            compressors=BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
            fill_value=-1024,
            dimension_names=("z", "y", "x"),
        )
        arr[...] = hu
        _fsync_tree(tmp)
        _replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _replace_dir(src: Path, dst: Path) -> None:
    """Move directory ``src`` to ``dst``; an existing ``dst`` is moved aside first and deleted afterwards."""
    old = None
    if dst.exists():
        old = dst.with_name(f"{dst.name}.tmp-old-{uuid.uuid4().hex[:12]}")
        os.rename(dst, old)
    os.rename(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_volume(path: Path) -> Volume:
    """Read a store written by :func:`write_volume`."""
    group = zarr.open_group(zarr.storage.LocalStore(Path(path)), mode="r")
    attrs = group.attrs["cacflow"]
    hu = group["hu"][...]
    return Volume(
        hu=np.asarray(hu, dtype=np.int16),
        spacing_zyx=tuple(attrs["spacing_zyx_mm"]),
        origin=tuple(attrs["origin_lps_mm"]),
        direction=np.asarray(attrs["direction_columns_xyz"], dtype=float),
        z_positions_mm=np.asarray(attrs["z_positions_mm"], dtype=float),
        metadata=dict(attrs.get("metadata", {})),
    )


def read_geometry(path: Path) -> Geometry:
    """The grid of a store (shape, spacing, origin, direction) from its JSON metadata, without reading voxels."""
    attrs = read_attributes(path)
    with open(Path(path) / "hu" / "zarr.json", encoding="utf-8") as fh:
        shape = tuple(int(n) for n in json.load(fh)["shape"])
    return Geometry(shape, tuple(attrs["spacing_zyx_mm"]), tuple(attrs["origin_lps_mm"]),
                    np.asarray(attrs["direction_columns_xyz"], dtype=float),
                    np.asarray(attrs["z_positions_mm"], dtype=float))


def read_attributes(path: Path) -> dict:
    """Only the ``cacflow`` attributes of a store (no pixel data)."""
    with open(Path(path) / "zarr.json", encoding="utf-8") as fh:
        return json.load(fh)["attributes"]["cacflow"]


def remove_stale_temporaries(directory: Path) -> int:
    """Delete ``*.tmp-*`` leftovers of interrupted writes below ``directory``; returns how many were removed."""
    directory = Path(directory)
    if not directory.exists():
        return 0
    n = 0
    for p in directory.rglob("*.tmp-*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        n += 1
    return n
