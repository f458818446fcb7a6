"""Motion gating: skip inference on frames where nothing moved inside the analysed area.

Most public-space cameras look at an empty or unchanging scene most of the time; running the
detector on every analysed frame there burns the CPU that lets one box serve more cameras.
The gate compares a small blurred grey copy of each frame with the one at the *last inference*
(not the previous frame), so a slow walker accumulates change until it counts, and a skipped
frame always means "the detector's last answer still describes this scene".

It never goes blind: a full inference runs at least every `max_skip_s` seconds (a person who
stands still stays counted) and on every frame while the caller says `force` (an event is open).
Pure logic over numpy arrays: no threads, no clocks (time is the frame time passed in).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

WORK_WIDTH = 192
"""Width of the grey working image: 768x576 becomes 192x144 (a 1.8 m person 100 px tall is ~25 px)."""


@dataclass(frozen=True, slots=True)
class GateDecision:
    run: bool
    reason: str  # "first" | "motion" | "forced" | "max_skip" | "time_jump" | "disabled" | "still"
    changed_fraction: float


def thresholds(sensitivity: float) -> tuple[int, float]:
    """(grey-level change a pixel needs, share of the frame that must change) for 0 < s <= 1.

    s = 0.5 asks for a 25-level change over 0.05 % of the frame, about a 4x4 block at 192x144:
    a distant person's head and shoulders, while sensor noise and H.264 flicker stay below.
    """
    if not 0 < sensitivity <= 1:
        raise ValueError(f"motion sensitivity must be in (0, 1], got {sensitivity}")
    pixel = int(round(10 + 30 * (1 - sensitivity)))
    area = 0.0005 * 10 ** (2 * (0.5 - sensitivity))
    return pixel, area


def region_mask(shape: tuple[int, int], zones: Sequence[np.ndarray], private: Sequence[np.ndarray] = (),
                grow_up_px: int = 0) -> np.ndarray:
    """The uint8 mask the gate watches: zones (pixel polygons) minus private masks.

    Zones count people by their feet, but a person standing at a zone's far edge has a body
    above it: `grow_up_px` (about a person's height there) extends each zone upwards so that
    motion of such a body is seen too. No zones means the whole frame.
    """
    height, width = shape
    mask: np.ndarray = np.zeros((height, width), np.uint8)  # cv2.dilate below returns a plain ndarray
    if zones:
        cv2.fillPoly(mask, [np.asarray(zone, np.int32) for zone in zones], 255)
    else:
        mask[:] = 255
    if grow_up_px > 0:
        kernel = np.ones((grow_up_px + 1, 1), np.uint8)
        mask = cv2.dilate(mask, kernel, anchor=(0, 0))
    if private:
        cv2.fillPoly(mask, [np.asarray(area, np.int32) for area in private], 0)
    return mask


class MotionGate:
    """Says whether a frame needs inference; counts how many it let through.

    region_mask: uint8 image (any size, resized to the frame), non-zero where analysis looks:
    the zones minus the private masks. None means the whole frame.
    """

    def __init__(self, region_mask: np.ndarray | None = None, *, sensitivity: float = 0.5,
                 max_skip_s: float = 5.0, enabled: bool = True, work_width: int = WORK_WIDTH):
        if max_skip_s <= 0:
            raise ValueError(f"max_skip_s must be positive, got {max_skip_s}")
        self.pixel_threshold, self.area_fraction = thresholds(sensitivity)
        self.max_skip_s = max_skip_s
        self.enabled = enabled
        self.work_width = work_width
        self._region_source = region_mask
        self._region: np.ndarray | None = None
        self._reference: np.ndarray | None = None
        self._last_run_t: float | None = None
        self.checked = 0
        self.passed = 0

    @property
    def skipped(self) -> int:
        return self.checked - self.passed

    @property
    def skip_ratio(self) -> float:
        """Share of checked frames that skipped inference (0 when nothing was checked)."""
        return self.skipped / self.checked if self.checked else 0.0

    def check(self, image: np.ndarray, t: float, force: bool = False) -> GateDecision:
        """Decide for `image` (BGR or grey) at frame time `t`; a pass makes it the new reference."""
        small = self._prepare(image)
        decision = self._decide(small, t, force)
        self.checked += 1
        if decision.run:
            self.passed += 1
            self._reference, self._last_run_t = small, t
        return decision

    def reset(self) -> None:
        """Forget the reference (after a reconnect or a PTZ move): the next frame runs."""
        self._reference, self._last_run_t = None, None

    def _decide(self, small: np.ndarray, t: float, force: bool) -> GateDecision:
        if not self.enabled:
            return GateDecision(True, "disabled", 0.0)
        if self._reference is None or self._last_run_t is None or self._reference.shape != small.shape:
            return GateDecision(True, "first", 1.0)
        changed = self._changed_fraction(small)
        if force:
            return GateDecision(True, "forced", changed)
        if changed >= self.area_fraction:
            return GateDecision(True, "motion", changed)
        if t < self._last_run_t:
            return GateDecision(True, "time_jump", changed)
        if t - self._last_run_t >= self.max_skip_s:
            return GateDecision(True, "max_skip", changed)
        return GateDecision(False, "still", changed)

    def _changed_fraction(self, small: np.ndarray) -> float:
        assert self._reference is not None
        diff = cv2.absdiff(small, self._reference)
        moved = diff > self.pixel_threshold
        if self._region is not None:
            moved &= self._region
        return float(np.count_nonzero(moved)) / moved.size

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        height, width = grey.shape
        size = (self.work_width, max(1, round(height * self.work_width / width)))
        small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (5, 5), 0)
        if self._region_source is not None and (self._region is None or self._region.shape != small.shape):
            region = cv2.resize(self._region_source, size, interpolation=cv2.INTER_AREA)
            self._region = region > 0
        return small
