"""ByteTrack-style tracker: ids survive motion, misses and crossings; low scores never start tracks."""

from __future__ import annotations

import numpy as np

from gateway.analytics.matching import greedy_match
from gateway.analytics.tracker import ByteTracker, TrackerSettings, iou_matrix


def box(x: float, foot_y: float, height: float = 170.0) -> list[float]:
    """A person-shaped box (width 0.4 x height) standing at (x, foot_y)."""
    return [x - 0.2 * height, foot_y - height, x + 0.2 * height, foot_y]


def step(tracker: ByteTracker, t: float, *people: tuple[list[float], float]) -> np.ndarray:
    boxes = np.array([p[0] for p in people], dtype=np.float32).reshape(-1, 4)
    scores = np.array([p[1] for p in people], dtype=np.float32)
    _, ids = tracker.update(boxes, scores, t)
    return ids


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10], [100, 100, 110, 110]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], float)
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 50 / 150], [0.0, 0.0]])


def test_greedy_match_takes_best_pairs_first():
    similarity = np.array([[0.9, 0.8], [0.85, 0.1]])
    rows, cols = greedy_match(similarity, 0.2)
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 0)]  # (1, 1) is below the minimum
    rows, cols = greedy_match(np.zeros((0, 3)), 0.2)
    assert rows.size == cols.size == 0


def test_constant_motion_keeps_its_id():
    tracker = ByteTracker()
    ids = [step(tracker, i * 0.1, (box(100 + 12 * i, 400), 0.9))[0] for i in range(50)]
    assert ids == [1] * 50


def test_walker_at_two_fps_is_tracked_although_boxes_never_overlap():
    """0.5 s between frames, 1.4 m/s: 0.7 m per frame, more than a body width."""
    tracker = ByteTracker()
    ids = [step(tracker, i * 0.5, (box(100 + 70 * i, 400), 0.9))[0] for i in range(10)]
    assert ids == [1] * 10


def test_new_person_is_confirmed_on_the_second_detection():
    tracker = ByteTracker()
    assert step(tracker, 0.0).tolist() == []
    assert step(tracker, 0.1, (box(100, 400), 0.9)).tolist() == [-1]
    assert step(tracker, 0.2, (box(102, 400), 0.9)).tolist() == [1]


def test_everyone_on_the_first_frame_is_confirmed_at_once():
    tracker = ByteTracker()
    assert step(tracker, 0.0, (box(100, 400), 0.9), (box(400, 400), 0.9)).tolist() == [1, 2]


def test_one_frame_false_positive_never_gets_an_id():
    tracker = ByteTracker()
    step(tracker, 0.0, (box(100, 400), 0.9))
    assert step(tracker, 0.1, (box(100, 400), 0.9), (box(500, 300), 0.9)).tolist() == [1, -1]
    frame, ids = tracker.update(np.array([box(100, 400)], np.float32), np.array([0.9], np.float32), 0.2)
    assert ids.tolist() == [1] and frame.ids.tolist() == [1]


def test_three_frame_miss_keeps_the_id():
    tracker = ByteTracker()
    seen = []
    for i in range(20):
        person = [] if i in (8, 9, 10) else [(box(100 + 10 * i, 400), 0.9)]
        seen.append(step(tracker, i * 0.1, *person).tolist())
    assert all(ids == [1] for i, ids in enumerate(seen) if i not in (8, 9, 10))


def test_lost_track_is_reported_at_its_predicted_position():
    tracker = ByteTracker()
    for i in range(10):
        step(tracker, i * 0.1, (box(100 + 10 * i, 400), 0.9))
    frame, _ = tracker.update(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 1.0)
    assert frame.visible.tolist() == [False] and frame.missed.tolist() == [1]
    centre_x = (frame.boxes[0, 0] + frame.boxes[0, 2]) / 2
    assert abs(centre_x - 200) < 5  # kept walking at 100 px/s


def test_track_lost_longer_than_the_buffer_gets_a_new_id():
    tracker = ByteTracker(TrackerSettings(max_lost_s=1.0))
    step(tracker, 0.0, (box(100, 400), 0.9))
    step(tracker, 0.1, (box(100, 400), 0.9))
    step(tracker, 0.2)
    frame, _ = tracker.update(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 1.3)
    assert len(frame) == 0
    step(tracker, 1.4, (box(100, 400), 0.9))
    assert step(tracker, 1.5, (box(100, 400), 0.9)).tolist() == [2]


def test_two_crossing_people_keep_their_ids():
    """Walking towards each other at slightly different depths; boxes overlap heavily mid-way."""
    tracker = ByteTracker()
    history = []
    for i in range(40):
        left_to_right = (box(100 + 10 * i, 400), 0.9)
        right_to_left = (box(490 - 10 * i, 410, 175), 0.85)
        history.append(step(tracker, i * 0.1, left_to_right, right_to_left).tolist())
    assert all(ids == [1, 2] for ids in history)


def test_crossing_with_the_far_person_hidden_keeps_ids():
    """The person behind is not detected for the three frames of full overlap."""
    tracker = ByteTracker()
    history = []
    for i in range(40):
        front = (box(100 + 10 * i, 420, 180), 0.9)
        back = (box(490 - 10 * i, 380, 150), 0.8)
        hidden = abs((100 + 10 * i) - (490 - 10 * i)) < 30
        people = [front] if hidden else [front, back]
        history.append(step(tracker, i * 0.1, *people).tolist())
    assert all(ids == ([1] if len(ids) == 1 else [1, 2]) for ids in history)


def test_low_score_detections_extend_tracks_but_never_start_them():
    tracker = ByteTracker(TrackerSettings(high_score=0.5))
    step(tracker, 0.0, (box(100, 400), 0.9))
    # The known person fades to a low score (partly occluded); a stranger appears with a low score.
    for i in range(1, 10):
        ids = step(tracker, i * 0.1, (box(100 + 5 * i, 400), 0.3), (box(500, 400), 0.3))
        assert ids.tolist() == [1, -1]


def test_low_score_detection_does_not_revive_a_lost_track():
    tracker = ByteTracker(TrackerSettings(high_score=0.5))
    step(tracker, 0.0, (box(100, 400), 0.9))
    step(tracker, 0.1)
    assert step(tracker, 0.2, (box(100, 400), 0.3)).tolist() == [-1]
    assert step(tracker, 0.3, (box(100, 400), 0.9)).tolist() == [1]
