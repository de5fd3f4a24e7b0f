"""Logging set-up: a stage's log holds the stage's lines and the warnings of the libraries it uses, not their
routine progress."""

from __future__ import annotations

import logging

from cacflow import logs


def test_codec_progress_is_left_out_and_warnings_kept(tmp_path):
    path = tmp_path / "logs" / "stage.log"
    try:
        logs.setup(path)
        logging.getLogger("openjpeg.encode").info("tile number 1 / 1")
        logging.getLogger("openjpeg.encode").warning("codec warning")
        logging.getLogger("cacflow.pipeline.shard").info("shard done")
    finally:
        logs.setup()  # back to stderr: later tests must not write into this file
    text = path.read_text()
    assert "tile number" not in text
    assert "codec warning" in text and "shard done" in text
