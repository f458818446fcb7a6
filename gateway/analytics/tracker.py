"""Multi-person tracking, ByteTrack-style, small enough to run beside the detector on a Pi.

Why a tracker at all: counts, dwell times and gathering membership must survive the detector
missing someone for a frame or two, and loitering needs "the same person" over minutes.

How (after ByteTrack, Zhang et al. 2022):
1. Every track is predicted to the frame time with a constant-velocity Kalman filter. The
   filter is decoupled per box coordinate (cx, cy, w, h each with its own velocity), so the
   covariance is four 2x2 blocks and predict/update are closed-form array expressions over all
   tracks at once, with the real time step (frames arrive at 0.5-10 fps, not at a fixed rate).
2. High-score detections are matched to all tracks (seen and lost) by IoU of the predicted box.
3. Low-score detections can only extend tracks that were seen in the previous frame: they
   rescue partly occluded people but never start a track (they are often false positives).
4. Tentative tracks (seen once) are matched to what is left; a tentative track that misses
   its second frame is dropped, so a one-frame false positive never gets an id.
5. What is still unmatched and scores high enough starts a tentative track.
Rounds 2 and 4 fall back on foot-point distance (in box heights, gated by the time since the
track was seen) for pairs that do not overlap: at the gateway's usual 2 fps a walker moves
more than a body width between frames, so IoU alone cannot pick up a new walker.

Assignment is greedy, best pair first (see `matching.greedy_match`).
Lost tracks are kept for `max_lost_s` so a person re-emerging from an occlusion keeps the id.

Known limits (motion only, no appearance): two people crossing while one hides the other can
swap ids, and a tight line of people who start walking together, moving more than half their
spacing per frame, shifts ids by one (each detection overlaps the track ahead of it best).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from gateway.analytics.matching import greedy_match

INITIAL_SPEED_STD = 1.0
"""Prior velocity std of a new track, in box heights per second (walking ~0.8 heights/s)."""
MEASUREMENT_STD = 0.05
"""Detector box noise, as a fraction of box height (ByteTrack: 1/20)."""
ACCELERATION_STD = np.array([0.5, 0.5, 0.05, 0.05])
"""Process noise per coordinate (cx, cy, w, h), in box heights per second squared."""


@dataclass(frozen=True, slots=True)
class TrackerSettings:
    """Thresholds of the association rounds (see the module docstring).

    high_score: detections at or above it take part in round 2, below it only in round 3.
    new_track_score: minimum score to start a track. *_iou: minimum IoU per round.
    max_lost_s: how long an unseen track is kept for re-identification.
    gate_heights, gate_heights_per_s: reach of the distance fallback, in box heights, growing
    with the time since the track was seen.
    """

    high_score: float = 0.5
    new_track_score: float = 0.5
    match_iou: float = 0.2
    low_match_iou: float = 0.5
    tentative_match_iou: float = 0.3
    max_lost_s: float = 3.0
    gate_heights: float = 0.5
    gate_heights_per_s: float = 1.5


@dataclass(frozen=True, slots=True)
class TrackFrame:
    """Confirmed tracks after one update, as parallel arrays (row i describes track i).

    boxes: this frame's detection for visible tracks, the predicted box for lost ones.
    scores: the matched detection's score (visible) or the last one seen (lost).
    visible: matched a detection in this frame. missed: consecutive frames without one.
    """

    ids: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    visible: np.ndarray
    missed: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, keep: np.ndarray) -> TrackFrame:
        return TrackFrame(*(getattr(self, f.name)[keep] for f in fields(self)))


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of x1, y1, x2, y2 boxes."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    width = np.minimum(a[:, 2, None], b[:, 2]) - np.maximum(a[:, 0, None], b[:, 0])
    height = np.minimum(a[:, 3, None], b[:, 3]) - np.maximum(a[:, 1, None], b[:, 1])
    inter = np.maximum(width, 0) * np.maximum(height, 0)
    return inter / np.maximum(area_a[:, None] + area_b - inter, 1e-9)


def _to_state(boxes: np.ndarray) -> np.ndarray:
    """x1, y1, x2, y2 -> cx, cy, w, h."""
    return np.concatenate([(boxes[:, :2] + boxes[:, 2:]) * 0.5, boxes[:, 2:] - boxes[:, :2]], axis=1)


def _to_boxes(state: np.ndarray) -> np.ndarray:
    half = state[:, 2:] * 0.5
    return np.concatenate([state[:, :2] - half, state[:, :2] + half], axis=1)


class _Tracks:
    """Track table as parallel arrays, so prediction and matching are vectorised."""

    def __init__(self) -> None:
        self.ids = np.zeros(0, np.int64)
        self.pos = np.zeros((0, 4))
        self.vel = np.zeros((0, 4))
        self.p11 = np.zeros((0, 4))  # position variance
        self.p12 = np.zeros((0, 4))  # position-velocity covariance
        self.p22 = np.zeros((0, 4))  # velocity variance
        self.det_box = np.zeros((0, 4))  # the last detection's box, reported as seen
        self.score = np.zeros(0)
        self.last_seen = np.zeros(0)
        self.missed = np.zeros(0, np.int64)
        self.confirmed = np.zeros(0, bool)

    def __len__(self) -> int:
        return len(self.ids)

    def keep(self, keep: np.ndarray) -> None:
        if keep.all():
            return
        for name, value in vars(self).items():
            setattr(self, name, value[keep])

    def add(self, ids: np.ndarray, boxes: np.ndarray, scores: np.ndarray, t: float, confirmed: bool):
        n = len(ids)
        if not n:
            return
        state = _to_state(boxes)
        height = state[:, 3:4]
        new = {
            "ids": ids,
            "pos": state,
            "vel": np.zeros((n, 4)),
            "p11": (2 * MEASUREMENT_STD * height) ** 2 * np.ones((1, 4)),
            "p12": np.zeros((n, 4)),
            "p22": (INITIAL_SPEED_STD * height) ** 2 * np.ones((1, 4)),
            "det_box": boxes,
            "score": scores.astype(np.float64),
            "last_seen": np.full(n, t),
            "missed": np.zeros(n, np.int64),
            "confirmed": np.full(n, confirmed),
        }
        for name, value in new.items():
            setattr(self, name, np.concatenate([getattr(self, name), value]))

    def predict(self, dt: float) -> None:
        """Constant velocity, white-acceleration process noise scaled by box height."""
        if dt <= 0 or not len(self):
            return
        q = (ACCELERATION_STD * self.pos[:, 3:4]) ** 2
        self.pos = self.pos + self.vel * dt
        self.pos[:, 2:] = np.maximum(self.pos[:, 2:], 1.0)
        self.p11 = self.p11 + 2 * dt * self.p12 + dt * dt * self.p22 + q * dt**3 / 3
        self.p12 = self.p12 + dt * self.p22 + q * dt**2 / 2
        self.p22 = self.p22 + q * dt

    def correct(self, rows: np.ndarray, boxes: np.ndarray, scores: np.ndarray, t: float) -> None:
        """Kalman update of the matched rows with their detections."""
        z = _to_state(boxes)
        r = (MEASUREMENT_STD * self.pos[rows, 3:4]) ** 2
        p11, p12, p22 = self.p11[rows], self.p12[rows], self.p22[rows]
        innovation_var = p11 + r
        k1, k2 = p11 / innovation_var, p12 / innovation_var
        residual = z - self.pos[rows]
        self.pos[rows] += k1 * residual
        self.vel[rows] += k2 * residual
        self.p11[rows] = (1 - k1) * p11
        self.p12[rows] = (1 - k1) * p12
        self.p22[rows] = p22 - k2 * p12
        self.det_box[rows] = boxes
        self.score[rows] = scores
        self.last_seen[rows] = t
        self.missed[rows] = 0

    def boxes(self) -> np.ndarray:
        return _to_boxes(self.pos)


class ByteTracker:
    """Assigns stable integer ids (from 1) to people across frames; see the module docstring."""

    def __init__(self, settings: TrackerSettings | None = None):
        self.settings = settings or TrackerSettings()
        self._tracks = _Tracks()
        self._next_id = 1
        self._t: float | None = None

    def update(self, boxes: np.ndarray, scores: np.ndarray, t: float) -> tuple[TrackFrame, np.ndarray]:
        """Advance to time `t` (seconds) with this frame's detections.

        Returns the confirmed tracks and, for each detection, the id of the confirmed track it
        belongs to (-1 for detections that are not, or not yet, a confirmed person).
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        first_frame = self._t is None
        self._tracks.predict(0.0 if self._t is None else t - self._t)
        self._t = t
        det_track = self._match(boxes, scores, t)

        tracks = self._tracks
        matched = det_track >= 0
        tracks.correct(det_track[matched], boxes[matched], scores[matched], t)
        tracks.confirmed[det_track[matched]] = True
        det_ids = np.full(len(boxes), -1, np.int64)
        det_ids[matched] = tracks.ids[det_track[matched]]
        tracks.keep(tracks.confirmed & (t - tracks.last_seen <= self.settings.max_lost_s))
        self._start_tracks(boxes, scores, det_ids, matched, t, confirmed=first_frame)
        return self._frame(t), det_ids

    def _match(self, boxes: np.ndarray, scores: np.ndarray, t: float) -> np.ndarray:
        """The three association rounds; returns the matched track row per detection (-1: none)."""
        tracks, s = self._tracks, self.settings
        predicted = tracks.boxes()
        det_track = np.full(len(boxes), -1, np.intp)
        taken = np.zeros(len(tracks), bool)
        high = scores >= s.high_score
        rounds = (
            (tracks.confirmed, high, s.match_iou, True),
            (tracks.confirmed & (tracks.missed == 0), ~high, s.low_match_iou, False),
            (~tracks.confirmed, high, s.tentative_match_iou, True),
        )
        for track_ok, det_ok, min_iou, by_distance in rounds:
            free_tracks = np.flatnonzero(track_ok & ~taken)
            free_dets = np.flatnonzero(det_ok & (det_track < 0))
            if not len(free_tracks) or not len(free_dets):
                continue
            rows, cols = greedy_match(iou_matrix(predicted[free_tracks], boxes[free_dets]), min_iou)
            det_track[free_dets[cols]] = free_tracks[rows]
            taken[free_tracks[rows]] = True
            if by_distance and len(rows) < min(len(free_tracks), len(free_dets)):
                free_tracks = free_tracks[~taken[free_tracks]]
                free_dets = free_dets[det_track[free_dets] < 0]
                elapsed = t - tracks.last_seen[free_tracks]
                reach = self._reach(predicted[free_tracks], boxes[free_dets], elapsed)
                rows, cols = greedy_match(reach, 1e-9)
                det_track[free_dets[cols]] = free_tracks[rows]
                taken[free_tracks[rows]] = True
        tracks.missed[~taken] += 1
        return det_track

    def _reach(self, track_boxes: np.ndarray, det_boxes: np.ndarray, elapsed: np.ndarray) -> np.ndarray:
        """Similarity for pairs that do not overlap but are within walking reach (low frame rates).

        Foot-point distance in track heights, gated by how far a person can get since the track
        was last seen; boxes must be of similar size. 0 outside the gate, else 1 / (1 + distance).
        """
        height = track_boxes[:, 3] - track_boxes[:, 1]
        dx = (track_boxes[:, 0, None] + track_boxes[:, 2, None] - det_boxes[:, 0] - det_boxes[:, 2]) * 0.5
        dy = track_boxes[:, 3, None] - det_boxes[:, 3]
        distance = np.sqrt(dx * dx + dy * dy) / height[:, None]
        gate = self.settings.gate_heights + self.settings.gate_heights_per_s * elapsed
        ratio = (det_boxes[:, 3] - det_boxes[:, 1]) / height[:, None]
        within = (distance <= gate[:, None]) & (ratio > 0.67) & (ratio < 1.5)
        return np.where(within, 1.0 / (1.0 + distance), 0.0)

    def _start_tracks(self, boxes, scores, det_ids, matched, t, confirmed: bool) -> None:
        """Unmatched confident detections become tentative tracks (confirmed on the first frame)."""
        new = ~matched & (scores >= self.settings.new_track_score)
        ids = np.arange(self._next_id, self._next_id + np.count_nonzero(new))
        self._next_id += len(ids)
        self._tracks.add(ids, boxes[new], scores[new], t, confirmed)
        if confirmed:
            det_ids[new] = ids

    def _frame(self, t: float) -> TrackFrame:
        """Confirmed tracks, with this frame's detection box where they were seen."""
        tracks = self._tracks
        visible = tracks.last_seen == t
        boxes = np.where(visible[:, None], tracks.det_box, tracks.boxes())
        frame = TrackFrame(
            ids=tracks.ids,
            boxes=boxes.astype(np.float32),
            scores=tracks.score.astype(np.float32),
            visible=visible,
            missed=tracks.missed.copy(),
        )
        return frame.select(tracks.confirmed)
