"""With SeriesInstanceUID not allowed, no series UID reaches any discovery or preprocessing output."""

from __future__ import annotations

import json

from cacflow import config as cfg
from cacflow.pipeline.discover import run_discover
from cacflow.pipeline.layout import CohortLayout
from cacflow.pipeline.shard import run_shard, shard_options
from cacflow.synth.broken import SELECTION_OVERRIDES, generate_broken_corpus


def test_series_uids_stay_out_when_not_allowed(tmp_path):
    root = tmp_path / "dicom"
    cases = generate_broken_corpus(root, seed=3)
    config = cfg.validate({"cohorts": {"c": {"root": str(root)}}, "selection": dict(SELECTION_OVERRIDES),
                           "privacy": {"allowed_fields": ["PatientID"]}})
    layout = CohortLayout(tmp_path / "results", "c")
    run_discover(root, layout, config)
    for shard in json.loads(layout.shard_index.read_text())["shards"]:
        run_shard(layout, shard, root, workers=1, **dict(shard_options(config), scheduler="synchronous"))
    uids = {c.series_uid for c in cases if c.series_uid}
    assert uids
    for path in layout.base.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            for uid in uids:
                assert uid.encode() not in blob, f"series UID {uid} leaked into {path}"
