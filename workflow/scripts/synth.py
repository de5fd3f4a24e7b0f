"""Adapter: snakemake rule synth_cohort -> cacflow.synth.cohort.generate_cohort."""

import shutil
from pathlib import Path

from cacflow import logs
from cacflow.synth.cohort import generate_cohort


def main(out: Path, spec: dict, threads: int, log_file: str) -> None:
    logs.setup(log_file)
    for sub in ("dicom", "truth"):  # a half-written earlier run must not mix with this one
        shutil.rmtree(out / sub, ignore_errors=True)
    generate_cohort(out, n=int(spec["n"]), seed=int(spec["seed"]), small=bool(spec["small"]), workers=threads,
                    anatomy=int(spec["anatomy"]))


if "snakemake" in globals():
    main(Path(snakemake.params.out), dict(snakemake.params.spec), snakemake.threads, snakemake.log[0])
