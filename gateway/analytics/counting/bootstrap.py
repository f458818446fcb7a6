"""The first empty scene of a camera, from a few samples of a scene that may already be crowded.

A counting background starts from samples taken over the first minutes (`BackgroundSettings.
warmup_samples` frames `warmup_interval_s` apart): per pixel, their median, so that people
passing by are not learnt. Whoever stands or sits on one spot through more than half of that
time is, though, and the model then misses them: on the held-out half of the mall clip, a
background learnt from its own first 95 s, with people sitting around the planter and standing
by the kiosk, made the count 4.3 people low over the next 100 s (MAE 4.5). So:

- **What the detector sees standing still is never the floor.** Pixels inside the detector's
  person boxes in at least `COVERED_SHARE` of the samples are filled in from the scene around
  them (inpainting), not taken from the samples (a live camera started at that half: MAE 2.93
  from the end of its warm-up on, against 3.09 with the plain median).
- **Better, do not learn it from the crowd at all.** A camera that has a better start (the
  background it kept before a restart, or the empty scene its counting model was fitted
  against) starts from that and uses the samples only to check it: `scene_mismatch` is the
  share of the picture where not one sample agrees with it (a camera that was turned, a scene
  rebuilt, day against night); over `MISMATCH_LIMIT` the samples' own scene replaces it.
  People who sit through the whole warm-up do not count against it: they cover a few per cent
  of the picture (1.3 % on the mall clip), a camera turned by 2 % of the picture's width a
  quarter.

Pure numpy/OpenCV on the small grey working pictures (uint8 or float32, H x W).
"""

from __future__ import annotations

import cv2
import numpy as np

COVERED_SHARE = 0.5
"""A pixel inside the detector's person boxes in this share of the samples or more is inpainted."""
INPAINT_RADIUS = 5
CHECK_LEVELS = 12.0
"""A starting scene is confirmed at a pixel when a sample is within this many grey levels of it
(the background's smallest foreground threshold)."""
MISMATCH_LIMIT = 0.15
"""A starting scene that no sample confirms over this share of the picture is replaced."""


def empty_scene(samples: list[np.ndarray], covered: list[np.ndarray] | None = None) -> np.ndarray:
    """The empty scene (float32, H x W) behind `samples`; `covered`: per sample, a mask of the
    detector's person boxes (non-zero = a person), or None when no detector looked at them."""
    if not samples:
        raise ValueError("an empty scene needs at least one sample")
    scene = np.median(np.stack(samples), axis=0).astype(np.float32)
    if covered is None or len(covered) != len(samples):
        return scene
    always = np.stack([np.asarray(mask) > 0 for mask in covered]).mean(axis=0) >= COVERED_SHARE
    if not always.any():
        return scene
    filled = cv2.inpaint(np.clip(scene + 0.5, 0, 255).astype(np.uint8), always.view(np.uint8),
                         INPAINT_RADIUS, cv2.INPAINT_TELEA)
    return np.where(always, filled.astype(np.float32), scene)


def scene_mismatch(scene: np.ndarray, samples: list[np.ndarray]) -> float:
    """The share of the picture (0..1) where no sample agrees with `scene`, each sample first
    scaled to the scene's exposure (one gain per sample, as the background compares frames)."""
    if not samples:
        return 0.0
    scene = scene.astype(np.float32)
    confirmed = np.zeros(scene.shape, bool)
    for sample in samples:
        frame = sample.astype(np.float32)
        frame *= _gain(frame, scene)
        confirmed |= np.abs(frame - scene) <= CHECK_LEVELS
    return float(1.0 - confirmed.mean())


def _gain(frame: np.ndarray, scene: np.ndarray) -> float:
    """The exposure ratio scene / frame over the half of the pixels closest to the scene."""
    difference = np.abs(frame - scene)
    keep = difference <= np.percentile(difference, 50)
    return (float(np.median(scene[keep])) + 1.0) / (float(np.median(frame[keep])) + 1.0)
