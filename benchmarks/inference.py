"""Inference benchmark: per-scan model time at several batch sizes, and whole inference shards of growing size.

Usage (after the workflow has preprocessed a cohort):
    python benchmarks/inference.py --results results --cohort demo [--device auto] [--out benchmarks/out/inference.json]
        [--segmentation unetpp,levels,lstm,patch3d] [--batches 8,16,32,64,128]

1. Models alone, on the first scan of the cohort: the localizer (3 x 128 canvas slices), the regressor over the
   scan's heart-box slices at each of ``--batches`` and each shipped segmentation scorer (models/unetpp, unet,
   levels, lstm, patch3d) over the same box as the pipeline calls it, at its own batch size and at each of
   ``--batches`` (slices, or 3-D patches, per forward pass); seconds per scan (median of repeats), the ratio to the
   regressor at 64 and to the 2-D U-Net (the conv-LSTM's comparison in seed 002).
2. Shards of N = 1, 2, 4, ... scans, each run as a fresh Python process exactly as a workflow job runs it
   (interpreter start, imports, model load, reading volumes, inference, writing rows), with the localizer, the
   regressor and the ``--segmentation`` scorers (default: the config's ``models.segmentation``): wall seconds,
   seconds per scan and scans per second, and the job's own split (imports, model load, inference loop).
   Per-scan time falls with N because the fixed costs are paid once per job.
Reports ratios against the smallest setting beside the absolute figures (absolute times depend on the machine).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cacflow import config as cfg
from cacflow.io.zarr_store import read_volume
from cacflow.models.heart_box import choose_heart_box
from cacflow.models.localizer import build_canvas
from cacflow.models.mask_scorers import load_mask_scorer
from cacflow.models.predict import HeartLocalizer, SliceRegressor, pick_device
from cacflow.models.regression import fit_box
from cacflow.pipeline.layout import CohortLayout

JOB = """
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
from cacflow import config as cfg
from cacflow.pipeline.infer import run_infer_shard
from cacflow.pipeline.layout import CohortLayout
import pyarrow.parquet as pq
config = cfg.load(Path(sys.argv[1]))
config["inference"]["device"] = sys.argv[5]
segmentation = {k: Path(v) for k, v in json.loads(sys.argv[6]).items()}
layout = CohortLayout(Path(sys.argv[2]), sys.argv[3])
t1 = time.perf_counter()
rows = run_infer_shard(layout, sys.argv[4], config, Path(config["models"]["localizer"]),
                       Path(config["models"]["regressor"]), segmentation, use_cache=False)
job_s = time.perf_counter() - t1
meta = json.loads(pq.read_schema(layout.shard_infer(sys.argv[4])).metadata[b"cacflow"])
print(json.dumps({"import_s": t1 - t0, "job_s": job_s, "model_load_s": meta["model_load_s"],
                  "infer_s": meta["infer_s"], "done": int((rows.status == "done").sum()),
                  "segmented": int(rows.segmentation.notna().sum())}))
"""


def _progress(row: dict) -> None:
    """Each measurement as it is taken (stderr), so a run stopped at a time limit still shows what it measured."""
    print(json.dumps(row), file=sys.stderr, flush=True)


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def model_times(layout: CohortLayout, key: str, config: dict, device: torch.device, repeats: int,
                batches: list[int]) -> list[dict]:
    volume = read_volume(layout.volume(key, config["scoring"]["grid"]))
    localizer = HeartLocalizer.load(Path(config["models"]["localizer"]), device)
    origin, direction = np.asarray(volume.origin), np.asarray(volume.direction)
    canvas, _, _ = build_canvas(volume.hu, volume.spacing_zyx, direction)
    rows = [{"model": "localizer", "batch": 128, "slices": 3 * 128,
             "canvas_s": _median_time(lambda: build_canvas(volume.hu, volume.spacing_zyx, direction), repeats),
             "s_per_scan": _median_time(lambda: localizer.probabilities(canvas), repeats)}]
    _progress(rows[0])
    choice = choose_heart_box(localizer, volume.hu, volume.spacing_zyx, origin, direction)
    z0, z1, y0, y1, x0, x1 = fit_box(choice.box_zyx, volume.hu.shape).box_zyx
    slices = volume.hu[z0:z1, y0:y1, x0:x1]
    for batch in sorted(set(batches) | {64}):
        reg = SliceRegressor.load(Path(config["models"]["regressor"]), device, batch_size=batch)
        reg.predict_slices(slices[:batch], volume.spacing_zyx)  # warm-up
        rows.append({"model": "regressor", "batch": batch, "slices": len(slices),
                     "s_per_scan": _median_time(lambda reg=reg: reg.predict_slices(slices, volume.spacing_zyx),
                                                repeats)})
        _progress(rows[-1])
    base = next(r["s_per_scan"] for r in rows if r["model"] == "regressor" and r["batch"] == 64)
    box = (z0, z1, y0, y1, x0, x1)
    for name in ("unetpp", "unet", "levels", "lstm", "patch3d"):
        directory = Path(__file__).resolve().parents[1] / "models" / name
        if not (directory / "weights.pt").is_file():
            continue
        scorer = load_mask_scorer(directory, device)
        default = scorer.batch_size
        for batch in [default] + [b for b in sorted(batches) if b != default]:
            if batch != default:
                scorer = load_mask_scorer(directory, device, batch)
            scorer.predict_box(volume.hu, (z0, min(z1, z0 + 4), y0, y1, x0, x1))  # warm-up
            t = _median_time(lambda scorer=scorer: scorer.predict_box(volume.hu, box), repeats)
            rows.append({"model": name, "batch": batch, "default_batch": batch == default, "slices": len(slices),
                         "s_per_scan": t, "ratio_to_regressor_b64": t / base})
            _progress(rows[-1])
    unet = next((r["s_per_scan"] for r in rows if r["model"] == "unet" and r["default_batch"]), None)
    for r in rows:
        if unet and r.get("default_batch"):
            r["ratio_to_unet"] = r["s_per_scan"] / unet  # seed 002 compares the conv-LSTM's CPU time with it
    return rows


def shard_times(config_path: Path, layout: CohortLayout, shard: str, sizes: list[int], device: str,
                segmentation: dict[str, str]) -> list[dict]:
    tasks = pd.read_parquet(layout.shard_tasks(shard))
    rows = []
    for n in sizes:
        if n > len(tasks):
            break
        name = f"shard-bench{n:04d}"
        tasks.head(n).to_parquet(layout.shard_tasks(name))
        try:
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", JOB, str(config_path), str(layout.results), layout.cohort,
                                  name, device, json.dumps(segmentation)], check=True, capture_output=True,
                                 text=True)
            wall = time.perf_counter() - t
            job = json.loads(out.stdout.strip().splitlines()[-1])
        finally:
            layout.shard_tasks(name).unlink(missing_ok=True)
            layout.shard_infer(name).unlink(missing_ok=True)
        rows.append({"scans": n, "wall_s": wall, "s_per_scan": wall / n, "scans_per_s": n / wall, **job})
        _progress(rows[-1])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=Path("config.yaml"))
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--cohort", default="demo")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", default="1,2,4,8,16,32")
    ap.add_argument("--batches", default="8,16,32,64,128", help="batch sizes of the model timings")
    ap.add_argument("--segmentation", default=None,
                    help="comma-separated shipped scorers (models/<name>) for the shard jobs; default: the config's")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/inference.json"))
    args = ap.parse_args()
    config = cfg.load(args.config)
    layout = CohortLayout(args.results, args.cohort)
    shard = json.loads(layout.shard_index.read_text())["shards"][0]
    tasks = pd.read_parquet(layout.shard_tasks(shard))
    key = next(k for k in tasks["series_key"] if layout.volume(k, config["scoring"]["grid"]).exists())
    device = pick_device(args.device)
    if args.segmentation is None:
        segmentation = {k: str(v) for k, v in config["models"]["segmentation"].items()}
    else:
        models = Path(__file__).resolve().parents[1] / "models"
        segmentation = {n: str(models / n) for n in args.segmentation.split(",") if n}
    report = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "cuda": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
              "segmentation": sorted(segmentation),
              "models": model_times(layout, key, config, device, args.repeats,
                                    [int(b) for b in args.batches.split(",")]),
              "shards": shard_times(args.config, layout, shard, [int(s) for s in args.sizes.split(",")], args.device,
                                    segmentation)}
    reg = [r for r in report["models"] if r["model"] == "regressor"]
    for r in reg:
        r["ratio_to_smallest_batch"] = r["s_per_scan"] / reg[0]["s_per_scan"]
    for r in report["shards"]:
        r["per_scan_ratio_to_1"] = r["s_per_scan"] / report["shards"][0]["s_per_scan"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"{report['device']} ({report['cuda'] or str(report['threads']) + ' threads'}), torch {report['torch']}")
    for r in report["models"]:
        print(f"  {r['model']:9s} batch {r['batch']:4d}: {r['s_per_scan']:8.3f} s per scan")
    for r in report["shards"]:
        print(f"  shard of {r['scans']:3d}: {r['wall_s']:7.1f} s wall (imports {r['import_s']:.1f}, model load "
              f"{r['model_load_s']:.1f}, inference {r['infer_s']:.1f}), {r['scans_per_s']:.3f} scans/s, per-scan "
              f"ratio to 1 scan {r['per_scan_ratio_to_1']:.2f}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
