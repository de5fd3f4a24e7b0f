"""Classification of reconstruction kernels (ConvolutionKernel) into soft and sharp.

Vendor kernel names differ; the patterns are configuration (``selection.kernel_classes``) with defaults for
GE, Siemens, Toshiba/Canon and Philips. Patterns are full-match regular expressions, case-insensitive.
"""

from __future__ import annotations

import re

DEFAULT_KERNEL_CLASSES: dict[str, list[str]] = {
    "soft": [
        r"STANDARD|STND|SOFT|SMOOTH",  # GE
        r"[BI][0-3][0-9][fsh]?",  # Siemens B30f, B31f, I26f ...
        r"FC0[0-9]|FC1[0-9]|FC2[0-9]",  # Toshiba/Canon
        r"[ABC]|CB|UB",  # Philips
    ],
    "sharp": [
        r"BONE|BONEPLUS|LUNG|DETAIL|EDGE|CHST|CHEST",  # GE
        r"[BI][4-9][0-9][fsh]?",  # Siemens B45f, B50f, B60f, B70f
        r"FC[3-9][0-9]",  # Toshiba/Canon FC51, FC53, FC86
        r"[DEL]|Y[A-D]|YC|YD",  # Philips
    ],
}


def kernel_class(kernel: str | None, classes: dict[str, list[str]] | None = None) -> str:
    """Return the class name ('soft', 'sharp', ...) whose pattern matches ``kernel`` fully, else 'unknown'.

    Multi-valued kernels (``"B30f\\\\SAFIRE"``) are classified by their first value.
    """
    if not kernel:
        return "unknown"
    name = kernel.split("\\")[0].strip()
    for cls, patterns in (classes or DEFAULT_KERNEL_CLASSES).items():
        for pat in patterns:
            if re.fullmatch(pat, name, flags=re.IGNORECASE):
                return cls
    return "unknown"
