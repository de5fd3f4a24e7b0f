"""Model checkpoints: ``weights.pt`` (state dicts + architecture) beside ``model_card.json``, written atomically.

A model directory holds exactly these two files. The card records what the model is and how it was made (data
hash, split sizes, hyper-parameters, validation and test metrics, software versions) and the SHA-256 of the
weights file; :func:`load_checkpoint` refuses weights that do not match their card.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
from pathlib import Path

import numpy as np
import torch

from cacflow import __version__
from cacflow.io.tables import write_bytes, write_text

WEIGHTS = "weights.pt"
CARD = "model_card.json"


class CheckpointError(Exception):
    """A model directory that cannot be used; the message names the directory and the fix."""


def software_versions() -> dict:
    """Versions that matter for reproducing a model."""
    return {"cacflow": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def save_checkpoint(directory: Path, payload: dict, card: dict) -> dict:
    """Write ``payload`` (state dicts, architecture kwargs; tensors and plain values) and its card; returns the card.

    The weights go first, the card (with the weights' SHA-256) last: a directory whose card is missing or does not
    match its weights is incomplete and is refused when loaded.
    """
    directory = Path(directory)
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    card = {**card, "weights_sha256": hashlib.sha256(data).hexdigest(), "weights_bytes": len(data)}
    (directory / CARD).unlink(missing_ok=True)
    write_bytes(data, directory / WEIGHTS)
    return _write_card(directory, card)


def _write_card(directory: Path, card: dict) -> dict:
    """Write ``card`` as the directory's model card (sorted JSON); returns it."""
    write_text(json.dumps(card, indent=2, sort_keys=True, default=float) + "\n", directory / CARD)
    return card


def update_card(directory: Path, card: dict) -> dict:
    """Replace the card of a finished checkpoint, its weights untouched (re-evaluation); returns the card.

    Raises:
        CheckpointError: the card's ``weights_sha256`` is not the SHA-256 of the weights on disk.
    """
    directory = Path(directory)
    digest = hashlib.sha256((directory / WEIGHTS).read_bytes()).hexdigest()
    if card.get("weights_sha256") != digest:
        raise CheckpointError(f"{directory}: the new card names weights {card.get('weights_sha256')}, the weights "
                              f"on disk are {digest}; a card can only be replaced for the weights it describes")
    return _write_card(directory, card)


def read_card(directory: Path) -> dict:
    """The model card of a model directory."""
    path = Path(directory) / CARD
    if not path.is_file():
        raise CheckpointError(f"{directory}: no {CARD}; the directory is not a finished cacflow model "
                              f"(retrain it with `snakemake train`, or point config models at models/)")
    return json.loads(path.read_text())


def load_checkpoint(directory: Path, kind: str) -> tuple[dict, dict]:
    """(payload, card) of a model directory whose card says ``kind`` ('localizer' or 'regressor').

    Raises:
        CheckpointError: missing files, weights that do not match the card's SHA-256, or another kind of model.
    """
    directory = Path(directory)
    card = read_card(directory)
    path = directory / WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{directory}: {WEIGHTS} is missing; retrain with `snakemake train`")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != card.get("weights_sha256"):
        raise CheckpointError(f"{path}: the weights do not match model_card.json (SHA-256 differs); "
                              "the checkpoint is incomplete or was edited; retrain or restore both files")
    if card.get("kind") != kind:
        raise CheckpointError(f"{directory}: a {card.get('kind')!r} model where a {kind!r} model is expected; "
                              "check the models section of the config")
    payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return payload, card


def model_id(card: dict) -> str:
    """Short identity of a model: kind and the first 12 hex digits of its weights' SHA-256."""
    return f"{card['kind']}-{card['weights_sha256'][:12]}"
