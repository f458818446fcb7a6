"""The empty scene behind the people: a slow, selective background model for crowd counting.

A counting model reads the people off what differs from the empty scene, so the background
must stay empty even when the scene is not: a crowd that stands for minutes, people sitting on
a bench, a queue. The rules that keep it so:

- It starts from `warmup_samples` frames taken `warmup_interval_s` apart (about 1.5 minutes by
  default), by the rules of `bootstrap.py`: their per-pixel median (a person must stand on the
  same spot in more than half of them to enter it), except where the detector's person boxes
  cover a pixel in half of them or more: that is filled in from the floor around it. Until
  then there is no background and no count (`observe` returns None), never a zero. A recording
  can be warmed from its own footage (`warm_from`), which is how an annotated first frame,
  which has no past, still gets a background.
- Or it starts at once from a background known before (`start_from`: the one the camera kept
  across a restart, or the empty scene its counting model was fitted against); the warm-up
  samples then only check it, and replace it if the camera no longer sees that scene
  (`StartCheck`, for the caller to log).
- After that it creeps towards the picture (an approximate running median: each pixel moves
  by a fixed number of grey levels per second), very slowly where the scene is background,
  ten times slower where it sees something new, and not at all inside the detector's person
  boxes or where the foreground is dense: a gathering takes tens of minutes to fade.
- What left the scene heals fast: where the background is textured and the picture is plain
  (a person who was there while it warmed up and walked away, revealing the floor), it moves
  at `heal_levels_per_s`.
- Lighting: every frame is rescaled by one gain (the median ratio of background-like pixels),
  which follows a camera's auto-exposure and clouds; the foreground threshold follows each
  pixel's own noise (flicker of screens, leaves), never below `min_threshold` grey levels.
  Shadows mostly change brightness, not texture, so the count leans on gradient changes
  (`Change.gradient`), which a soft shadow hardly has.

Everything works on a small grey picture (the counter's working size), so it costs a fraction
of a millisecond per frame.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from gateway.analytics.counting.bootstrap import MISMATCH_LIMIT, empty_scene, scene_mismatch

GAIN_SAMPLE_STRIDE = 4
"""Every 4th row and column estimates the frame's gain: 1/16 of the pixels is plenty."""
GAIN_BACKGROUND_SHARE = 60
"""The gain is measured on the `GAIN_BACKGROUND_SHARE` % of pixels closest to the background."""
MAX_STEP_S = 5.0
"""A gap in the frames (motion gating, a stall) counts as at most this much adaptation time."""
LEARN_EVERY_S = 1.0
"""The background learns at most once a second (with the time elapsed since): it moves by a
fraction of a grey level per second anyway, and learning is half the cost of a frame."""
EDGE_STRENGTH = 120.0
"""|d/dx| + |d/dy| (3x3 Sobel) above which a working pixel is on an edge."""
SETTING_RANGES: dict[str, tuple[float, float]] = {
    "warmup_samples": (1, 1000), "warmup_interval_s": (0.01, 3600.0), "adapt_levels_per_s": (0.0, 255.0),
    "foreground_levels_per_s": (0.0, 255.0), "heal_levels_per_s": (0.0, 255.0), "min_threshold": (0.0, 255.0),
    "noise_factor": (0.0, 100.0), "noise_time_s": (0.01, 86400.0), "gradient_threshold": (0.0, 10000.0),
    "heal_texture_margin": (0.0, 10000.0), "dense_share": (0.0, 1.0),
}
"""What a model file may set each background setting to (the defaults sit well inside)."""


@dataclass(frozen=True)
class BackgroundSettings:
    """How the background is learnt (stored in the model file: a fit and its use must agree)."""

    warmup_samples: int = 20
    warmup_interval_s: float = 5.0
    adapt_levels_per_s: float = 0.04
    foreground_levels_per_s: float = 0.008
    heal_levels_per_s: float = 2.0
    min_threshold: float = 12.0
    noise_factor: float = 3.0
    noise_time_s: float = 10.0
    gradient_threshold: float = 100.0
    heal_texture_margin: float = 8.0
    dense_share: float = 0.5
    """A cell whose foreground covers this share of it is not learnt at all (a dense crowd)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> BackgroundSettings:
        """The settings a model file holds (unknown keys ignored); raises ValueError naming a
        value that is not a number within `SETTING_RANGES`."""
        known: dict[str, Any] = {}
        for key, value in data.items():
            if key not in cls.__dataclass_fields__:
                continue
            low, high = SETTING_RANGES[key]
            if (not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value)
                    or not low <= value <= high or (key == "warmup_samples" and value != int(value))):
                kind = "a whole number" if key == "warmup_samples" else "a number"
                raise ValueError(f"background {key} must be {kind} within {low:g}..{high:g}")
            known[key] = int(value) if key == "warmup_samples" else float(value)
        return cls(**known)

    @property
    def warmup_s(self) -> float:
        return (self.warmup_samples - 1) * self.warmup_interval_s


@dataclass(frozen=True)
class Change:
    """What differs from the background in one working-size frame (uint8 0/1 maps).

    foreground: grey level differs by more than the pixel's noise threshold.
    gradient: the local gradient changed strongly (edges that appeared or vanished): people's
        outlines and clothing, robust to gain and to soft shadows.
    edges: the frame is on an edge where the background (3x3 around) has none.
    """

    foreground: np.ndarray
    gradient: np.ndarray
    edges: np.ndarray


@dataclass(frozen=True, eq=False)
class EmptyScene:
    """A learnt background as it is kept (across a restart, in a model file): the grey levels
    and each pixel's noise, float32 at the working size."""

    background: np.ndarray
    noise: np.ndarray


@dataclass(frozen=True)
class StartCheck:
    """How a background known before (`origin`: "kept", "scene") fared against the warm-up
    samples: `mismatch`, the share of the picture no sample confirmed; `replaced` when that was
    over the limit and the samples' own scene took its place."""

    origin: str
    mismatch: float
    replaced: bool


class BackgroundModel:
    """One camera's background at the working size (H x W grey); see the module docstring.

    What only depends on the background (its gradients, edges, texture, noise thresholds) is
    computed when the background changes, at most every `LEARN_EVERY_S`, not every frame.
    """

    def __init__(self, size: tuple[int, int], settings: BackgroundSettings | None = None,
                 cell_px: int = 10):
        self.width, self.height = size
        self.settings = settings or BackgroundSettings()
        self.cell_px = cell_px
        self.background: np.ndarray | None = None
        self._samples: list[np.ndarray] = []
        self._covered: list[np.ndarray] = []
        self._next_sample_t: float | None = None
        self._checking: str | None = None
        """The origin of a background known before, while the warm-up samples are still to check it."""
        self.start_check: StartCheck | None = None
        """The verdict on a background known before, once the warm-up has checked it."""
        self._noise = np.full((self.height, self.width), 4.0, np.float32)
        self._last_learnt: float | None = None
        self._open_kernel = np.ones((2, 2), np.uint8)
        self._derived: _Derived | None = None

    # ----------------------------------------------------------------- warm-up

    @property
    def ready(self) -> bool:
        return self.background is not None

    @property
    def warmup_left_s(self) -> float:
        """Seconds of footage still needed before the first count (0 when ready)."""
        if self.ready:
            return 0.0
        return (self.settings.warmup_samples - len(self._samples)) * self.settings.warmup_interval_s

    def warm_from(self, frames: list[np.ndarray], covered: list[np.ndarray] | None = None) -> None:
        """Start from the empty scene behind `frames` (working-size grey), e.g. taken from a
        recording; `covered`: per frame, the detector's person boxes (1 = a person), if known."""
        if not frames:
            raise ValueError("warming a background needs at least one frame")
        self.background = empty_scene(frames, covered)
        self._samples, self._covered, self._checking = [], [], None
        self._derive()

    def start_from(self, scene: EmptyScene, origin: str = "kept") -> None:
        """Start at once from a background known before (working size); the next warm-up's
        samples check it (`start_check`)."""
        shape = (self.height, self.width)
        if scene.background.shape != shape or scene.noise.shape != shape:
            raise ValueError(f"a {scene.background.shape[1]}x{scene.background.shape[0]} background cannot start a "
                             f"{self.width}x{self.height} one")
        self.background = scene.background.astype(np.float32).copy()
        self._noise = scene.noise.astype(np.float32).copy()
        self._samples, self._covered, self._checking = [], [], origin
        self._derive()

    def check_with(self, frames: list[np.ndarray]) -> StartCheck:
        """Check a background known before against `frames` at once (a replay has them ahead)."""
        return self._check(frames, [])

    def state(self) -> EmptyScene | None:
        """The background and its noise to keep (copies); None while warming up."""
        if self.background is None:
            return None
        return EmptyScene(self.background.copy(), self._noise.copy())

    def _collect(self, gray: np.ndarray, t: float, protect: np.ndarray | None) -> None:
        if self._next_sample_t is not None and t < self._next_sample_t:
            return
        self._samples.append(gray.copy())
        self._covered.append(protect.copy() if protect is not None else np.zeros(gray.shape, np.uint8))
        self._next_sample_t = t + self.settings.warmup_interval_s
        if len(self._samples) < self.settings.warmup_samples:
            return
        if self._checking is not None:
            self._check(self._samples, self._covered)
        else:
            self.warm_from(self._samples, self._covered)
            self._last_learnt = t

    def _check(self, frames: list[np.ndarray], covered: list[np.ndarray]) -> StartCheck:
        """Keep the background known before unless the frames no longer show its scene."""
        assert self.background is not None
        mismatch = scene_mismatch(self.background, frames)
        check = StartCheck(self._checking or "kept", mismatch, mismatch > MISMATCH_LIMIT)
        if check.replaced:
            self.warm_from(frames, covered or None)
        self._samples, self._covered, self._checking = [], [], None
        self.start_check = check
        return check

    # ----------------------------------------------------------------- per frame

    def observe(self, gray: np.ndarray, t: float, protect: np.ndarray | None = None) -> Change | None:
        """Compare a working-size grey frame (uint8) with the background, then learn from it.

        protect: uint8 mask (1 = a person the detector sees): never learnt.
        Returns None while warming up.
        """
        if self.background is None or self._checking is not None:
            self._collect(gray, t, protect)
        if self.background is None or self._derived is None:
            return None
        derived = self._derived
        frame = gray.astype(np.float32)
        frame *= self._gain(gray, self.background)
        difference = cv2.absdiff(frame, self.background)
        foreground = cv2.morphologyEx(cv2.compare(difference, derived.threshold, cv2.CMP_GT),
                                      cv2.MORPH_OPEN, self._open_kernel)
        fx, fy = cv2.Sobel(frame, cv2.CV_32F, 1, 0), cv2.Sobel(frame, cv2.CV_32F, 0, 1)
        changed = cv2.magnitude(cv2.subtract(fx, derived.bx), cv2.subtract(fy, derived.by))
        gradient = _above(changed, self.settings.gradient_threshold)
        strength = np.abs(fx) + np.abs(fy)
        edges = cv2.bitwise_and(_above(strength, EDGE_STRENGTH), derived.plain)
        change = Change(foreground // 255, gradient // 255, edges // 255)
        if self._last_learnt is None or t - self._last_learnt >= LEARN_EVERY_S:
            elapsed = 0.0 if self._last_learnt is None else min(t - self._last_learnt, MAX_STEP_S)
            self._last_learnt = t
            self._learn(frame, difference, change.foreground, strength, protect, elapsed)
        return change

    @staticmethod
    def _gain(gray: np.ndarray, background_image: np.ndarray) -> float:
        """The exposure ratio background / frame over the pixels that look like background."""
        stride = GAIN_SAMPLE_STRIDE
        frame = gray[::stride, ::stride].astype(np.float32).ravel()
        background = background_image[::stride, ::stride].ravel()
        difference = np.abs(frame - background)
        keep = difference <= np.percentile(difference, GAIN_BACKGROUND_SHARE)
        frame_level = float(np.median(frame[keep])) + 1.0
        return (float(np.median(background[keep])) + 1.0) / frame_level

    def _learn(self, frame, difference, foreground, frame_strength, protect, elapsed: float) -> None:
        """Move the background towards `frame` by `elapsed` seconds' worth (see the docstring)."""
        if elapsed <= 0 or self.background is None or self._derived is None:
            return
        settings = self.settings
        frame_texture = cv2.blur(frame_strength, (5, 5))
        healing = cv2.bitwise_and(cv2.compare(self._derived.texture, frame_texture + settings.heal_texture_margin,
                                              cv2.CMP_GT), foreground * 255)
        kind = foreground.copy()  # 0 background, 1 foreground, 2 healing, 3 frozen
        kind[healing > 0] = 2
        frozen = cv2.bitwise_and(self._dense_cells(foreground), cv2.bitwise_not(healing))
        if protect is not None:
            frozen = cv2.bitwise_or(frozen, protect * 255)
        kind[frozen > 0] = 3
        rates = np.array([settings.adapt_levels_per_s, settings.foreground_levels_per_s,
                          settings.heal_levels_per_s, 0.0], np.float32) * elapsed
        step = rates[kind]
        self.background += np.sign(frame - self.background) * step
        blend = (1.0 - float(np.exp(-elapsed / settings.noise_time_s))) * (kind == 0)
        self._noise += (np.minimum(difference, 30.0) - self._noise) * blend
        self._derive()

    def _derive(self) -> None:
        if self.background is not None:
            self._derived = _Derived.of(self.background, self._noise, self.settings)

    def _dense_cells(self, foreground: np.ndarray) -> np.ndarray:
        """uint8 map (255 = dense): cells whose foreground covers `dense_share` or more."""
        cell = self.cell_px
        rows, columns = self.height // cell, self.width // cell
        share = cv2.resize(foreground[: rows * cell, : columns * cell].astype(np.float32), (columns, rows),
                           interpolation=cv2.INTER_AREA)
        dense = _above(share, self.settings.dense_share - 1e-9)
        return cv2.resize(dense, (self.width, self.height), interpolation=cv2.INTER_NEAREST)


@dataclass(frozen=True)
class _Derived:
    """What the per-frame comparison needs from the background, computed when it changes."""

    bx: np.ndarray
    by: np.ndarray
    texture: np.ndarray
    plain: np.ndarray
    """uint8 255 where the background has no edge (3x3 neighbourhood)."""
    threshold: np.ndarray

    @classmethod
    def of(cls, background: np.ndarray, noise: np.ndarray, settings: BackgroundSettings) -> _Derived:
        bx, by = cv2.Sobel(background, cv2.CV_32F, 1, 0), cv2.Sobel(background, cv2.CV_32F, 0, 1)
        strength = np.abs(bx) + np.abs(by)
        edges = cv2.dilate(_above(strength, EDGE_STRENGTH), np.ones((3, 3), np.uint8))
        threshold = np.maximum(noise * settings.noise_factor, settings.min_threshold).astype(np.float32)
        return cls(bx, by, cv2.blur(strength, (5, 5)), cv2.bitwise_not(edges), threshold)


def _above(image: np.ndarray, level: float) -> np.ndarray:
    """uint8 mask, 255 where `image` > `level` (the form OpenCV's bitwise operations take)."""
    return (image > level).view(np.uint8) * np.uint8(255)
