"""Logging set-up shared by the CLI and the workflow scripts."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Libraries that log routine progress at INFO (the JPEG 2000 encoder: one line per slice written, thousands per
#: synthetic cohort): kept to warnings and errors, so a stage's log shows the stage.
QUIET_LOGGERS: tuple[str, ...] = ("openjpeg", "libjpeg", "jpeg_ls", "pylibjpeg", "numcodecs")


#: The logger of progress lines (:mod:`cacflow.progress`): also shown on the terminal when logging to a file.
PROGRESS_LOGGER = "cacflow.progress"


def setup(log_file: str | Path | None = None, level: int = logging.INFO) -> None:
    """Log to ``log_file`` (created with its folder) or to stderr; replaces earlier handlers of the root logger.
    The :data:`QUIET_LOGGERS` pass warnings and errors only. With a log file, progress lines and warnings also go to
    stderr, so a long workflow job shows on the terminal (or its SLURM log) that it is moving."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(log_file, mode="w", encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    if log_file:
        terminal = logging.StreamHandler(sys.stderr)
        terminal.setFormatter(logging.Formatter("cacflow %(levelname)s: %(message)s"))
        terminal.addFilter(lambda record: record.name == PROGRESS_LOGGER or record.levelno >= logging.WARNING)
        root.addHandler(terminal)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    logging.captureWarnings(True)
