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


def test_progress_lines_reach_the_terminal_and_the_log(tmp_path, capfd):
    from cacflow.progress import Progress

    path = tmp_path / "logs" / "infer.log"
    try:
        logs.setup(path)
        progress = Progress(3, "infer c shard-0000", every_s=0.0)
        for _ in range(3):
            progress.advance()
        logging.getLogger("cacflow.pipeline.infer").info("routine line")
    finally:
        logs.setup()
    err = capfd.readouterr().err
    assert "infer c shard-0000: 1/3 done (" in err and "s left)" in err  # count, rate and time left
    assert "infer c shard-0000: 3/3 done (" in err and "routine line" not in err  # the terminal gets progress only
    text = path.read_text()
    assert "3/3 done" in text and "routine line" in text


def test_progress_logs_at_most_every_interval_and_always_at_the_end(caplog):
    from cacflow.progress import Progress

    with caplog.at_level(logging.INFO, logger="cacflow.progress"):
        progress = Progress(50, "score c shard-0001", every_s=3600.0)
        for _ in range(50):
            progress.advance()
    lines = [r.getMessage() for r in caplog.records if r.name == "cacflow.progress"]
    assert len(lines) == 1 and lines[0].startswith("score c shard-0001: 50/50 done (")
