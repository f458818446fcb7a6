"""Privacy masks: private areas (windows, courtyards) blanked out of every frame before it is
analysed, and out of every picture the gateway keeps or sends.

One function, used in both places, so a mask can never cover one and leak through the other:
the analytics blank the frame before detection (nobody is found or counted there), and the
evidence drawing blanks the picture again whatever frame it is handed (a snapshot taken from
another source still hides what the installer masked).
"""

from __future__ import annotations

import cv2
import numpy as np

MASK_COLOUR = (64, 64, 64)
"""Dark grey: clearly a mask, not a shadow, and neutral for the motion gate and the detector."""


def fill_masks(image: np.ndarray, masks: list[np.ndarray], colour: tuple[int, int, int] = MASK_COLOUR) -> None:
    """Blank the masked polygons (frame pixels) of `image`, in place."""
    if masks:
        cv2.fillPoly(image, [np.round(mask).astype(np.int32) for mask in masks], colour)
