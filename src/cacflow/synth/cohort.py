"""Orchestration: a synthetic NLST-style low-dose chest CT cohort on disk.

Layout::

    out/dicom/<PatientID>/<StudyFolder>/<SeriesFolder>/<hex>.dcm
    out/truth/series.parquet, lesions.parquet, cohort.json, volumes/<SeriesInstanceUID>.npz

All randomness of participant ``i`` comes from ``SeedSequence(seed, spawn_key=(i,))``,
so the bytes written do not depend on ``workers``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from cacflow import __version__
from cacflow.imaging.resample import superior_sign
from cacflow.io.labels import write_label_map
from cacflow.progress import Progress
from cacflow.scoring.scan import ScanScore
from cacflow.synth.acquisition import Acquisition, Reconstruction, draw_acquisition, draw_reconstructions
from cacflow.synth.anatomy import Lesion, Phantom, build_phantom, check_anatomy, place_lesions
from cacflow.synth.dicom_writer import SeriesInfo, StudyInfo, fake_study, write_axial_series, write_scout
from cacflow.synth.render import (
    HALO_HU,
    SliceGrid,
    blur,
    blur_patch,
    lesion_delta,
    make_grid,
    noise_field,
    quantize,
    render_background,
)
from cacflow.synth.scout import scout_images
from cacflow.synth.truth import (
    STRATA,
    ReferenceScore,
    converter_view,
    reference_columns,
    reference_score,
    save_npz,
    scan_reference,
    vessel_rows,
    write_cohort_json,
    write_tables,
)

GENERATOR_VERSION = f"cacflow-synth/{__version__}/3"

#: Plaque plan per target stratum: (count range, diameter mm range, peak HU range).
_PLANS: dict[str, tuple[tuple[int, int], tuple[float, float], tuple[float, float]]] = {
    "1-10": ((1, 1), (1.8, 2.4), (220.0, 380.0)),
    "11-100": ((1, 3), (2.4, 3.6), (250.0, 600.0)),
    "101-400": ((3, 6), (3.2, 4.6), (350.0, 900.0)),
    ">400": ((6, 12), (4.2, 6.0), (600.0, 1200.0)),
}
_MAX_ATTEMPTS = 12


@dataclass
class Series:
    """One rendered axial reconstruction in memory."""

    recon: Reconstruction
    base: np.ndarray  # blurred background + noise, float32 (z, y, x)
    patches: list[tuple[int, tuple[int, int, int], np.ndarray]] = field(default_factory=list)
    ref: ReferenceScore | None = None


def _participant_id(index: int) -> str:
    return str(100012 + 37 * index)


def _uid(seed: int, index: int, *parts: str) -> str:
    return generate_uid(entropy_srcs=["cacflow-synth", str(seed), str(index), *parts])


def _inside(grid: SliceGrid, thickness: float) -> Callable[[np.ndarray, float], bool]:
    """Predicate: point (LPS mm) at least ``margin`` mm inside the imaged volume and FOV."""
    zs = grid.z()
    zlo, zhi = float(zs.min()) - 0.5 * thickness, float(zs.max()) + 0.5 * thickness
    cx, cy = grid.fov_center_xy
    radius = 0.5 * grid.cols * grid.pixel_spacing[1]
    x, y = grid.x(), grid.y()
    xlo, xhi, ylo, yhi = float(x.min()), float(x.max()), float(y.min()), float(y.max())

    def inside(p: np.ndarray, margin: float) -> bool:
        return bool(zlo + margin + 3.0 <= p[2] <= zhi - margin - 3.0
                    and np.hypot(p[0] - cx, p[1] - cy) <= radius - margin
                    and xlo + margin <= p[0] <= xhi - margin and ylo + margin <= p[1] <= yhi - margin)

    return inside


def _compose(series: Series, fov: np.ndarray, rs: slice, cs: slice) -> tuple[np.ndarray, np.ndarray]:
    """HU (int16) and lesion ids (uint16) of rows ``rs`` x cols ``cs``, all slices."""
    r0, c0 = rs.start, cs.start
    acc = series.base[:, rs, cs].copy()
    ids = np.zeros(acc.shape, np.uint16)
    best = np.zeros(acc.shape, np.float32)
    for lid, (k0, pr, pc), val in series.patches:
        nz, ny, nx = val.shape
        a0, a1 = max(pr, r0), min(pr + ny, rs.stop)
        b0, b1 = max(pc, c0), min(pc + nx, cs.stop)
        if a0 >= a1 or b0 >= b1:
            continue
        v = val[:, a0 - pr:a1 - pr, b0 - pc:b1 - pc]
        dst = (slice(k0, k0 + nz), slice(a0 - r0, a1 - r0), slice(b0 - c0, b1 - c0))
        acc[dst] += v
        win = (v >= HALO_HU) & (v > best[dst])
        ids[dst][win] = lid
        best[dst][win] = v[win]
    return quantize(acc, fov[rs, cs]), ids


def _lesion_window(series_list: list[Series], shape: tuple[int, int]) -> tuple[slice, slice]:
    rows, cols = [], []
    for s in series_list:
        for _, (_, pr, pc), val in s.patches:
            rows += [pr, pr + val.shape[1]]
            cols += [pc, pc + val.shape[2]]
    if not rows:
        return slice(0, 1), slice(0, 1)
    return slice(max(0, min(rows)), min(shape[0], max(rows))), slice(max(0, min(cols)), min(shape[1], max(cols)))


def _plan_lesions(rng: np.random.Generator, phantom: Phantom, grid: SliceGrid, acq: Acquisition,
                  bg_hu: np.ndarray, fov: np.ndarray, series_list: list[Series], target: str) -> tuple[Lesion, ...]:
    """Place plaques and adjust count/size/peak until every series' reference hits ``target``.

    Sets ``patches`` and ``ref`` of each series.  Deterministic given ``rng``.
    """
    z_sorted = grid.ipp @ grid.normal
    px = grid.pixel_spacing[0]
    if target == "0":
        for s in series_list:
            s.patches, s.ref = [], ReferenceScore(0.0, 0.0, {})
        return ()
    (n_lo, n_hi), (d_lo, d_hi), (p_lo, p_hi) = _PLANS[target]
    n = int(rng.integers(n_lo, n_hi + 1))
    d_scale = p_scale = 1.0
    goal = STRATA.index(target)
    inside = _inside(grid, acq.thickness_mm)
    best: tuple[int, tuple[Lesion, ...], list] | None = None
    for _ in range(_MAX_ATTEMPTS):
        d_range = (float(np.clip(d_lo * d_scale, 1.0, 6.0)), float(np.clip(d_hi * d_scale, 1.0, 6.0)))
        p_range = (float(np.clip(p_lo * p_scale, 150.0, 1200.0)), float(np.clip(p_hi * p_scale, 150.0, 1200.0)))
        lesions = place_lesions(rng, phantom, n, d_range, p_range, inside)
        deltas = []
        for les in lesions:
            d = lesion_delta(les, grid, acq.thickness_mm, bg_hu)
            if d is not None:
                deltas.append((les.lesion_id, d[0], d[1]))
        for s in series_list:
            s.patches = [(lid, off, blur_patch(delta, s.recon.kernel, px)) for lid, off, delta in deltas]
        rs, cs = _lesion_window(series_list, fov.shape)
        levels = []
        for s in series_list:
            hu, ids = _compose(s, fov, rs, cs)
            s.ref = reference_score(hu, ids, z_sorted, grid.pixel_spacing)
            levels.append(STRATA.index(s.ref.stratum))
        miss = sum(abs(lv - goal) for lv in levels)
        if best is None or miss < best[0]:
            best = (miss, lesions, [(s.patches, s.ref) for s in series_list])
        if miss == 0:
            break
        if np.mean(levels) < goal:
            d_scale *= 1.18
            p_scale *= 1.12
            if d_lo * d_scale > 6.0 or rng.random() < 0.3:
                n = min(12, n + 1)
        else:
            d_scale *= 0.85
            p_scale *= 0.9
            if n > 1 and rng.random() < 0.5:
                n -= 1
    assert best is not None
    for s, (patches, ref) in zip(series_list, best[2]):
        s.patches, s.ref = patches, ref
    return best[1]


def _series_folder(number: int, text: str, rng: np.random.Generator) -> str:
    clean = "".join(ch for ch in text.upper() if ch.isalnum() or ch == ".")
    return f"{number}.000000-{clean}-{int(rng.integers(10000, 99999))}"


def generate_participant(out: Path, seed: int, index: int, small: bool, anatomy: int = 1) -> dict:
    """Render and write one participant (one study).  Returns series rows, lesion rows and a JSON entry.

    ``anatomy``: the phantom's coronary anatomy version (:data:`cacflow.synth.anatomy.ANATOMY_VERSIONS`)."""
    ss = np.random.SeedSequence(entropy=seed, spawn_key=(index,))
    r_anat, r_acq, r_les, r_noise, r_dcm, r_ids = (np.random.default_rng(s) for s in ss.spawn(6))
    patient_id = _participant_id(index)
    study_uid = _uid(seed, index, "study")
    study = fake_study(r_ids, patient_id, study_uid)
    study_dir = Path(patient_id) / (f"{study.study_date[4:6]}-{study.study_date[6:8]}-{study.study_date[:4]}"
                                    f"-NLST-LSS-{int(r_ids.integers(10000, 99999))}")
    target = STRATA[index % len(STRATA)]
    paired = index % 2 == 1
    with_scout = index % 3 == 2

    phantom = build_phantom(r_anat, anatomy)
    acq = draw_acquisition(r_acq, small, phantom.heart_center)
    recons = draw_reconstructions(r_acq, acq, index, paired)
    grid = make_grid(acq)
    fov = grid.fov_mask()
    px = grid.pixel_spacing[0]
    bg = render_background(phantom, grid, acq.thickness_mm)
    white = r_noise.standard_normal(bg.hu.shape, dtype=np.float32)
    series_list = [Series(rc, blur(bg.hu, rc.kernel, px) + noise_field(white, rc.kernel, px, rc.noise_hu))
                   for rc in recons]
    del white
    lesions = _plan_lesions(r_les, phantom, grid, acq, bg.hu, fov, series_list, target)

    acquisition_id = f"{patient_id}-acq1"
    frame_uid = _uid(seed, index, "frame")
    series_rows: list[dict] = []
    lesion_rows: list[dict] = []
    entry = {"patient_id": patient_id, "study_uid": study_uid, "target_stratum": target, "series": []}
    number = 1
    if with_scout:
        views = 1 + int(r_dcm.random() < 0.5)
        desc = "Topogram" if acq.manufacturer == "SIEMENS" else "SCOUT"
        info = SeriesInfo(_uid(seed, index, "series", "scout"), _uid(seed, index, "frame", "scout"), number, 1, desc)
        folder = study_dir / _series_folder(number, desc, r_dcm)
        write_scout(out / "dicom" / folder, scout_images(phantom, float(np.mean(grid.z())), views), acq, study,
                    info, desc, r_dcm)
        series_rows.append(_series_row(study, info.series_uid, folder, "scout", acq, None, f"{patient_id}-scout",
                                       views, None, 0))
        entry["series"].append({"series_uid": info.series_uid, "kind": "scout", "series_dir": folder.as_posix()})
        number += 1
    vessel_out: list[dict] = []
    vessel_of = np.zeros(max([les.lesion_id for les in lesions], default=0) + 1, np.uint8)
    for les in lesions:
        vessel_of[les.lesion_id] = les.vessel
    for s in series_list:
        rc = s.recon
        desc = f"{acq.thickness_mm:g}mm {rc.kernel.name} {rc.kernel.kernel_class.upper()}"
        info = SeriesInfo(_uid(seed, index, "series", str(number)), frame_uid, number, 1, desc)
        folder = study_dir / _series_folder(number, f"0OPA{acq.manufacturer[:2]}{rc.kernel.name}"
                                                    f"{acq.thickness_mm:g}{acq.kvp:g}", r_dcm)
        hu, ids = _compose(s, fov, slice(0, grid.rows), slice(0, grid.cols))
        write_axial_series(out / "dicom" / folder, hu, fov, grid, acq, rc, study, info, r_dcm)
        assert s.ref is not None
        # The reference a reader would give: the scoring library inside the plaque label map, computed on the
        # volume exactly as the pipeline will see it; the label map is written for the pipeline's 'reference' method.
        native, labels = converter_view(hu, vessel_of[ids], grid.ipp, grid.iop, grid.pixel_spacing)
        ref = scan_reference(native, labels)
        write_label_map(out / "truth" / "labels" / f"{info.series_uid}.nii.gz", labels, native.geometry)
        # the true heart (1) in the same geometry: what the localizer learns from and is evaluated against
        _, heart = converter_view(bg.heart[:, :1, :1], bg.heart, grid.ipp, grid.iop, grid.pixel_spacing)
        write_label_map(out / "truth" / "labels" / "heart" / f"{info.series_uid}.nii.gz", heart, native.geometry)
        vessel_out.extend(vessel_rows(info.series_uid, ref))
        save_npz(out / "truth" / "volumes" / f"{info.series_uid}.npz", {
            "hu": hu,
            "lesion_ids": ids,
            "vessel_calcium": vessel_of[ids],
            "vessel_lumen": bg.lumen,
            "heart_mask": bg.heart,
            "distractor_mask": bg.distractor,
            "ipp": grid.ipp.astype(np.float64),
            "iop": grid.iop.astype(np.float64),
            "pixel_spacing": np.asarray(grid.pixel_spacing, np.float64),
            "spacing_zyx": np.array([acq.increment_mm, grid.pixel_spacing[0], grid.pixel_spacing[1]]),
            "origin": grid.ipp[0].astype(np.float64),
            "direction": grid.direction().astype(np.float64),
        })
        present = {int(i) for i in np.unique(ids) if i > 0}
        series_rows.append(_series_row(study, info.series_uid, folder, "axial", acq, rc, acquisition_id,
                                       grid.n, ref, len(present)))
        # per-plaque shares on the grid the pipeline scores (anchored at the feet for either patient position)
        ref_per_lesion = reference_score(hu, ids, grid.ipp @ grid.normal, grid.pixel_spacing,
                                         superior_sign(grid.direction()), as_pipeline=True).per_lesion
        for les in lesions:
            if les.lesion_id in present:
                lesion_rows.append({"series_uid": info.series_uid, "lesion_id": les.lesion_id, "vessel": les.vessel,
                                    "center_lps_mm": list(les.center), "diameter_mm": les.diameter_mm,
                                    "peak_hu": les.peak_hu,
                                    "ref_agatston": float(ref_per_lesion.get(les.lesion_id, 0.0))})
        entry["series"].append({"series_uid": info.series_uid, "kind": "axial", "series_dir": folder.as_posix(),
                                "ref_stratum": ref.strata["five_class"], "ref_agatston": ref.total.agatston})
        number += 1
    return {"series": series_rows, "lesions": lesion_rows, "vessels": vessel_out, "entry": entry}


def _series_row(study: StudyInfo, series_uid: str, folder: Path, kind: str, acq: Acquisition,
                rc: Reconstruction | None, acquisition_id: str, n_slices: int, ref: ScanScore | None,
                n_lesions: int) -> dict:
    axial = rc is not None
    return {
        "patient_id": study.patient_id,
        "study_uid": study.study_uid,
        "series_uid": series_uid,
        "series_dir": folder.as_posix(),
        "kind": kind,
        "manufacturer": acq.manufacturer,
        "kernel": rc.kernel.name if axial else "",
        "kernel_class": rc.kernel.kernel_class if axial else "",
        "acquisition_id": acquisition_id,
        "kvp": acq.kvp,
        "thickness_mm": acq.thickness_mm if axial else float("nan"),
        "increment_mm": acq.increment_mm if axial else float("nan"),
        "pixel_spacing_mm": acq.pixel_spacing_mm if axial else float("nan"),
        "rows": acq.rows if axial else 128,
        "cols": acq.cols if axial else 128,
        "n_slices": n_slices,
        "patient_position": acq.patient_position,
        "storage": rc.storage.dtype if axial else "uint16",
        "transfer_syntax": rc.transfer_syntax if axial else "1.2.840.10008.1.2.1",
        "noise_hu": rc.noise_hu if axial else float("nan"),
        "n_lesions": n_lesions,
        **reference_columns(ref),
    }


def generate_cohort(out: Path, n: int, seed: int, small: bool = False, workers: int = 1, anatomy: int = 1) -> dict:
    """Write n synthetic participants (one study each, some with several series) under out/ with the phantom's
    coronary anatomy version ``anatomy``. Returns a summary dict (counts)."""
    out = Path(out)
    if n < 1:
        raise ValueError("n must be >= 1")
    check_anatomy(anatomy)  # before any worker starts
    (out / "dicom").mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    progress = Progress(n, f"synthetic cohort {out.name}: participants")
    results = []
    if workers > 1 and n > 1:
        with ProcessPoolExecutor(max_workers=min(workers, n)) as pool:
            for r in pool.map(generate_participant, [out] * n, [seed] * n, range(n), [small] * n, [anatomy] * n):
                results.append(r)
                progress.advance()
    else:
        for i in range(n):
            results.append(generate_participant(out, seed, i, small, anatomy))
            progress.advance()
    series_rows = [row for r in results for row in r["series"]]
    lesion_rows = [row for r in results for row in r["lesions"]]
    write_tables(out / "truth", series_rows, lesion_rows, [row for r in results for row in r["vessels"]])
    write_cohort_json(out / "truth" / "cohort.json", {
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "n": int(n),
        "small": bool(small),
        "anatomy": int(anatomy),
        "participants": [r["entry"] for r in results],
    })
    axial = [r for r in series_rows if r["kind"] == "axial"]
    strata = {s: sum(1 for r in axial if r["ref_stratum"] == s) for s in STRATA}
    return {
        "participants": n,
        "series": len(series_rows),
        "axial_series": len(axial),
        "scout_series": len(series_rows) - len(axial),
        "lesions": len(lesion_rows),
        "strata": strata,
    }
