"""Loaded models that score many scans: the heart localizer and the per-slice regression ConvNet.

A predictor is built once per job (weights read, moved to the device, switched to evaluation mode) and then called
for scan after scan. On CUDA it runs under bf16 autocast; on the CPU in float32 with ``channels_last`` memory
layout, so that CPU results are reproducible to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cacflow.imaging.volume import box_lps_corners
from cacflow.models.checkpoint import CheckpointError, load_checkpoint, model_id
from cacflow.models.localizer import (
    BOX_MARGIN_MM,
    MIN_CONFIDENCE,
    PLANES,
    BoxEstimate,
    LocalizerError,
    PlaneNet,
    box_from_probabilities,
    build_canvas,
    implausibility,
    normalise_hu,
    plane_slices,
)
from cacflow.models.regression import (
    RegressionNet,
    check_target_transform,
    decode_outputs,
    fit_box,
    slices_to_input,
)
from cacflow.scoring.agatston import AgatstonConvention
from cacflow.scoring.regression_rule import counted_slices


def pick_device(name: str = "auto") -> torch.device:
    """'auto' (CUDA when present, else CPU), 'cpu' or 'cuda'."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but no CUDA device is visible; use 'auto' or 'cpu'")
    return torch.device(name)


def _prepare(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    net = net.to(device).eval()
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last)
    return net


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@dataclass(frozen=True)
class HeartBox:
    """The localizer's answer for one scan, on the scan's grid.

    ``status``: 'found' (box usable), 'low_confidence', 'implausible' or 'not_found' (box not usable: the caller
    falls back). ``box_zyx``: half-open voxel ranges (None when not found); ``box_lps_mm``: min/max LPS corners.
    """

    status: str
    box_zyx: tuple[int, int, int, int, int, int] | None
    box_lps_mm: tuple[tuple[float, float, float], tuple[float, float, float]] | None
    confidence: float
    reason: str | None = None
    message: str | None = None
    probabilities: np.ndarray | None = field(default=None, repr=False)

    @property
    def usable(self) -> bool:
        return self.status == "found"


class HeartLocalizer:
    """The three plane ConvNets of a localizer checkpoint, loaded once."""

    def __init__(self, nets: dict[str, PlaneNet], card: dict, device: torch.device,
                 margin_mm: float = BOX_MARGIN_MM) -> None:
        self.nets = {p: _prepare(n, device) for p, n in nets.items()}
        self.card, self.device, self.margin_mm = card, device, float(margin_mm)
        self.id = model_id(card)

    @classmethod
    def load(cls, directory: Path, device: str | torch.device = "auto") -> HeartLocalizer:
        payload, card = load_checkpoint(directory, "localizer")
        nets: dict[str, PlaneNet] = {}
        for plane in PLANES:
            state = payload["state"][plane]  # one state dict per plane
            if not isinstance(state, dict):
                raise CheckpointError(f"{directory}: the {plane} entry is not one network's state dict (ensembles "
                                      "of several networks per plane are not supported)")
            nets[plane] = PlaneNet(**payload["arch"])
            nets[plane].load_state_dict(state)
        return cls(nets, card, device if isinstance(device, torch.device) else pick_device(device),
                   float(payload.get("box_margin_mm", BOX_MARGIN_MM)))

    @torch.inference_mode()
    def probabilities(self, canvas: np.ndarray) -> np.ndarray:
        """(3, 128) heart-presence probabilities of the axial, coronal and sagittal canvas slices."""
        return np.stack([self._plane_probabilities(plane_slices(canvas, plane), plane) for plane in PLANES])

    @torch.inference_mode()
    def slice_probabilities(self, slices_hu: np.ndarray, plane: str) -> np.ndarray:
        """Heart-presence probabilities of a stack (n, 128, 128) of canvas slices (HU, 3 mm voxels, canonical
        orientation) of one plane, read by that plane's network."""
        return self._plane_probabilities(normalise_hu(torch.from_numpy(np.asarray(slices_hu, np.float32)))[:, None],
                                         plane)

    def _plane_probabilities(self, x: torch.Tensor, plane: str) -> np.ndarray:
        x = x.to(self.device)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(self.device):
            p = torch.sigmoid(self.nets[plane](x).float())
        return p.cpu().numpy()

    def locate(self, hu: np.ndarray, spacing_zyx_mm: tuple[float, float, float], origin_lps_mm,
               direction: np.ndarray) -> HeartBox:
        """The heart box of one scan (z, y, x HU on its grid); never raises for an unreadable anatomy."""
        try:
            canvas, cmap, _ = build_canvas(hu, spacing_zyx_mm, direction)
        except LocalizerError as exc:
            return HeartBox("not_found", None, None, 0.0, exc.reason, exc.message)
        probs = self.probabilities(canvas)
        try:
            est = box_from_probabilities(probs, self.margin_mm)
        except LocalizerError as exc:
            return HeartBox("not_found", None, None, 0.0, exc.reason, exc.message, probs)
        return self._box(est, cmap, spacing_zyx_mm, origin_lps_mm, direction, probs)

    @staticmethod
    def _box(est: BoxEstimate, cmap, spacing, origin, direction, probs) -> HeartBox:
        box = cmap.canvas_to_input(est.lo, est.hi)
        if min(box[1] - box[0], box[3] - box[2], box[5] - box[4]) < 1:
            return HeartBox("not_found", None, None, est.confidence, "heart_not_found",
                            "the heart box lies outside the scan", probs)
        corners = box_lps_corners(box, spacing, origin, direction)
        why = implausibility(est)
        if why is not None:
            return HeartBox("implausible", box, corners, est.confidence, "localizer_box_implausible", why, probs)
        if est.confidence < MIN_CONFIDENCE:
            return HeartBox("low_confidence", box, corners, est.confidence, "localizer_low_confidence",
                            f"localizer confidence {est.confidence:.2f} below {MIN_CONFIDENCE}", probs)
        return HeartBox("found", box, corners, est.confidence, probabilities=probs)


class SliceRegressor:
    """The regression ConvNet of a regressor checkpoint, loaded once; scores the slices inside a heart box."""

    def __init__(self, net: RegressionNet, card: dict, device: torch.device, batch_size: int = 64,
                 slice_floor: float = 0.0) -> None:
        self.net = _prepare(net, device)
        self.card, self.device, self.batch_size = card, device, batch_size
        #: Agatston units below which a slice counts 0 when larger than the convention's minimum (chosen on the
        #: validation scans by the training run; 0 for checkpoints without one)
        self.slice_floor = float(slice_floor)
        self.id = model_id(card)

    @classmethod
    def load(cls, directory: Path, device: str | torch.device = "auto", batch_size: int = 64) -> SliceRegressor:
        payload, card = load_checkpoint(directory, "regressor")
        check_target_transform(payload["transform"], str(directory))
        net = RegressionNet(**payload["arch"])
        net.load_state_dict(payload["state"])
        return cls(net, card, device if isinstance(device, torch.device) else pick_device(device), batch_size,
                   float(payload.get("slice_floor_agatston", 0.0)))

    @torch.inference_mode()
    def predict_slices(self, slices_hu: np.ndarray, spacing_zyx_mm: tuple[float, float, float]) -> np.ndarray:
        """(n, 2) [Agatston, volume mm³] of HU slices (n, h, w) with h, w <= 256, batched."""
        out = []
        voxel = torch.tensor([list(spacing_zyx_mm)], dtype=torch.float32)
        for i in range(0, len(slices_hu), self.batch_size):
            x = slices_to_input(slices_hu[i:i + self.batch_size]).to(self.device)
            if self.device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(self.device):
                y = self.net(x, voxel.expand(len(x), 3).to(self.device)).float()
            out.append(y.cpu().numpy())
        raw = np.concatenate(out) if out else np.zeros((0, 2), np.float32)
        return decode_outputs(raw)

    def score(self, hu: np.ndarray, spacing_zyx_mm: tuple[float, float, float],
              box_zyx: tuple[int, int, int, int, int, int], convention: AgatstonConvention) -> RegressionScore:
        """The scan's regression scores: per-slice predictions inside the box, slices below the convention's minimum
        or the model's floor zeroed, summed."""
        raw, crop_zyx, truncated = self.predict_box(hu, spacing_zyx_mm, box_zyx)
        per_slice = counted_slices(raw, spacing_zyx_mm[0], convention, self.slice_floor)
        return RegressionScore(float(per_slice[:, 0].sum()), float(per_slice[:, 1].sum()), per_slice,
                               crop_zyx, truncated)

    def predict_box(self, hu: np.ndarray, spacing_zyx_mm: tuple[float, float, float],
                    box_zyx: tuple[int, int, int, int, int, int]) -> tuple[np.ndarray, tuple[int, ...], bool]:
        """Raw per-slice predictions (n, 2) [Agatston, volume mm³] of the box's slices (no convention applied),
        the crop actually used (z0, z1, y0, y1, x0, x1) and whether the box had to be truncated to 256²."""
        crop = fit_box(box_zyx, hu.shape)
        z0, z1, y0, y1, x0, x1 = crop.box_zyx
        return self.predict_slices(hu[z0:z1, y0:y1, x0:x1], spacing_zyx_mm), crop.box_zyx, crop.truncated


@dataclass(frozen=True)
class RegressionScore:
    """A scan's regression result: Agatston and volume (mm³) totals, per-slice values (slices z0..z1 of the crop)."""

    agatston: float
    volume_mm3: float
    per_slice: np.ndarray = field(repr=False)
    crop_zyx: tuple[int, ...]
    truncated: bool
