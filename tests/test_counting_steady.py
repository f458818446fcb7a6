"""Counts that hold up: the pure parts behind a cold start into a crowd and a steady count.

Each part on a case with a known answer: a warm-up that must not learn a detected person who
stands still as floor, a starting scene that the warm-up must confirm (or replace when the
camera was turned), the model file carrying its empty scene, the kept background that only a
matching, fresh file may restore, a smoothed count that holds still on noise yet follows a real
step within seconds, an `auto` switch that does not flip on one frame, and an event update rule
that ignores a wobble but reports a crowd that grew.
Real footage is in test_counting_mall.py (a held-out file replayed) and test_counting_live.py (a restart).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from gateway.analytics.counting import BackgroundSettings, CountingModel, CountSwitch, ModelFormatError
from gateway.analytics.counting.background import BackgroundModel, EmptyScene
from gateway.analytics.counting.bootstrap import empty_scene, scene_mismatch
from gateway.analytics.counting.perspective import from_ramp
from gateway.analytics.counting.smoothing import SteadyCount
from gateway.calibration.kept import KeptBackground, kept_path, load_kept, save_kept
from gateway.events.changes import ChangeGate, ChangeRule
from test_counting import floor, with_people

WORKING = (320, 240)


def shop_front() -> np.ndarray:
    """A textured scene (shelves, tiles): any shift of the camera changes most of its pixels."""
    rng = np.random.default_rng(11)
    return cv2.blur(rng.integers(40, 220, (240, 320)).astype(np.uint8), (3, 3))


def scene_of(image: np.ndarray) -> EmptyScene:
    return EmptyScene(image.astype(np.float32), np.full(image.shape, 4.0, np.float32))


# --------------------------------------------------------------------------- the first scene


def test_a_detected_person_standing_through_the_warm_up_is_not_learnt_as_floor() -> None:
    standing = [with_people(floor(), [(150, 100)]) for _ in range(6)]
    box = np.zeros((240, 320), np.uint8)
    box[96:124, 146:162] = 1
    learnt_blind = empty_scene(standing)
    learnt_seeing = empty_scene(standing, [box] * 6)
    person = (slice(100, 120), slice(150, 158))
    floor_level = floor()[person].astype(np.float32)
    assert np.abs(learnt_blind[person] - floor_level).mean() > 30  # the median took the person
    assert np.abs(learnt_seeing[person] - floor_level).mean() < 10  # filled in from the floor around
    outside = np.ones((240, 320), bool)
    outside[96:124, 146:162] = False
    assert np.array_equal(learnt_seeing[outside], learnt_blind[outside])


def test_a_person_detected_in_few_samples_leaves_the_median_alone() -> None:
    passing = [with_people(floor(), [(20 + 40 * i, 100)]) for i in range(5)]
    boxes = [np.zeros((240, 320), np.uint8) for _ in range(5)]
    boxes[0][96:124, 16:32] = 1
    assert np.array_equal(empty_scene(passing, boxes), empty_scene(passing))


def test_a_scene_is_confirmed_by_a_crowd_but_not_by_a_turned_camera() -> None:
    scene = floor().astype(np.float32)
    crowded = [with_people(floor(), [(x, 100) for x in range(20, 300, 12)]) for _ in range(5)]
    turned = [np.roll(shop_front(), 20, axis=1) for _ in range(5)]
    darker = [(floor() * 0.8).astype(np.uint8) for _ in range(5)]  # exposure: one gain corrects it
    assert scene_mismatch(scene, crowded) < 0.1
    assert scene_mismatch(scene, darker) < 0.02
    assert scene_mismatch(shop_front().astype(np.float32), turned) > 0.5


def test_a_background_started_from_a_scene_counts_at_once_and_is_checked_by_the_warm_up() -> None:
    settings = BackgroundSettings(warmup_samples=3, warmup_interval_s=5.0)
    kept = BackgroundModel(WORKING, settings)
    kept.start_from(scene_of(floor()), origin="kept")
    crowd = with_people(floor(), [(100, 100), (160, 100)])
    assert kept.ready and kept.warmup_left_s == 0
    assert kept.observe(crowd, 0.0).foreground.sum() > 0  # the people show from the first frame
    kept.observe(crowd, 5.0)
    assert kept.start_check is None
    kept.observe(crowd, 10.0)
    assert kept.start_check is not None and kept.start_check.origin == "kept"
    assert not kept.start_check.replaced and kept.start_check.mismatch < 0.05

    turned = BackgroundModel(WORKING, settings)
    turned.start_from(scene_of(np.roll(shop_front(), 40, axis=1)), origin="scene")
    for t in (0.0, 5.0, 10.0):
        turned.observe(shop_front(), t)
    assert turned.start_check is not None and turned.start_check.replaced
    assert turned.observe(shop_front(), 11.0).foreground.sum() == 0  # the samples' own scene now


def test_a_replay_checks_the_models_scene_against_frames_ahead() -> None:
    background = BackgroundModel(WORKING)
    background.start_from(scene_of(floor()), origin="scene")
    check = background.check_with([floor()] * 4)
    assert check.origin == "scene" and not check.replaced
    state = background.state()
    assert state is not None and np.allclose(state.background, floor())


# --------------------------------------------------------------------------- the model's scene


def model_with_scene(scene: EmptyScene | None) -> CountingModel:
    return CountingModel("cam1", (640, 480), from_ramp(40, 140, 480), np.array([0.01, 0.0, 0.0]),
                         np.ones((1, 1)), BackgroundSettings(), {"frames": 5}, scene)


def test_the_model_file_carries_its_empty_scene_within_a_sixteenth_of_a_level() -> None:
    rng = np.random.default_rng(3)
    scene = EmptyScene(rng.uniform(0, 255, (240, 320)).astype(np.float32),
                       rng.uniform(1, 30, (240, 320)).astype(np.float32))
    data = json.loads(json.dumps(model_with_scene(scene).to_dict()))
    assert data["scene"]["encoding"] == "png16+base64"
    back = CountingModel.from_dict(data).scene
    assert back is not None
    assert np.abs(back.background - scene.background).max() <= 1 / 32 + 1e-6
    assert np.abs(back.noise - scene.noise).max() <= 1 / 8 + 1e-6
    assert CountingModel.from_dict(model_with_scene(None).to_dict()).scene is None  # older files have none


@pytest.mark.parametrize("scene, message", [
    ({"encoding": "png+base64", "background": ""}, "'scene' must be"),
    ({"encoding": "png16+base64", "background": "not base64!", "noise": ""}, "not base64"),
    ({"encoding": "png16+base64", "background": "aGVsbG8=", "noise": ""}, "not a 16-bit grey PNG"),
])
def test_a_broken_scene_is_refused_with_the_reason(scene, message) -> None:
    data = model_with_scene(None).to_dict() | {"scene": scene}
    with pytest.raises(ModelFormatError, match=message):
        CountingModel.from_dict(data)


def test_a_scene_of_another_size_is_refused() -> None:
    small = EmptyScene(np.zeros((120, 160), np.float32), np.zeros((120, 160), np.float32))
    data = model_with_scene(small).to_dict()
    with pytest.raises(ModelFormatError, match="the grid's working picture is 320x240"):
        CountingModel.from_dict(data)


# --------------------------------------------------------------------------- the kept background


def kept_file(folder: Path, camera: str = "mall", size=(640, 480), settings=None, saved_at=None) -> Path:
    path = kept_path(folder, "mall")
    scene = scene_of(floor())
    save_kept(path, KeptBackground(camera, size, settings or BackgroundSettings(),
                                   time.time() if saved_at is None else saved_at, scene))
    return path


def load(folder: Path, now=None):
    return load_kept(kept_path(folder, "mall"), "mall", (640, 480), BackgroundSettings(), WORKING, now=now)


def test_a_fresh_matching_background_is_restored(tmp_path: Path) -> None:
    path = kept_file(tmp_path)
    assert path == tmp_path / "counting" / "mall.background.npz"
    kept, why = load(tmp_path)
    assert kept is not None and np.allclose(kept.scene.background, floor()) and "kept" in why and str(path) in why


@pytest.mark.parametrize("change, reason", [
    ({"camera": "gate"}, "was kept by camera 'gate'"),
    ({"size": (1280, 960)}, "was kept for 1280x960 frames, the camera now sends 640x480"),
    ({"settings": BackgroundSettings(warmup_samples=7)}, "other background settings"),
    ({"saved_at": time.time() - 7 * 3600}, "old (at most 6.0 h is trusted)"),
])
def test_a_mismatched_or_stale_background_is_ignored_saying_why(tmp_path: Path, change, reason) -> None:
    kept_file(tmp_path, **change)
    kept, why = load(tmp_path)
    assert kept is None and reason in why and "ignored" in why


def test_a_missing_or_corrupt_background_is_ignored(tmp_path: Path) -> None:
    assert load(tmp_path) == (None, f"no kept background ({kept_path(tmp_path, 'mall')})")
    kept_path(tmp_path, "mall").parent.mkdir(parents=True)
    kept_path(tmp_path, "mall").write_bytes(b"not a zip")
    kept, why = load(tmp_path)
    assert kept is None and "cannot be read" in why


# --------------------------------------------------------------------------- steady counts


def feed(values, start: float = 0.0, step: float = 0.5, steady: SteadyCount | None = None) -> list[int]:
    steady = steady or SteadyCount()
    return [steady.update(value, start + index * step) for index, value in enumerate(values)]


def test_noise_is_held_still_and_a_real_step_is_followed_within_seconds() -> None:
    rng = np.random.default_rng(5)
    noisy = 33 + rng.normal(0, 2, 120)
    shown = feed(noisy)
    raw_jitter = np.abs(np.diff(np.round(noisy))).mean()
    assert np.abs(np.diff(shown)).mean() < 0.5 * raw_jitter
    steady = SteadyCount()
    feed(30 + rng.normal(0, 1, 40), steady=steady)
    after = feed(40 + rng.normal(0, 1, 20), start=20.0, steady=steady)
    reached = next(index for index, value in enumerate(after) if abs(value - 40) <= 1)
    assert reached * 0.5 <= 2.5  # a step of ten people followed within 2.5 s at 2 fps


def test_noise_hardly_moves_the_count_a_jump_moves_it_most_of_the_way_and_a_gap_restarts_it() -> None:
    steady = SteadyCount()
    feed([30.0] * 10, steady=steady)
    assert steady.update(32.5, 5.0) == 30  # within the model's noise
    assert steady.update(45.0, 5.5) >= 38  # beyond it: a group arrived
    assert steady.update(12.0, 100.0) == 12  # after a long gap (camera offline): the new estimate


def test_the_shown_count_does_not_flicker_between_neighbours() -> None:
    assert set(feed([33.4, 33.6] * 20)) == {33}


# --------------------------------------------------------------------------- the auto switch


def first_time(switch: CountSwitch, detected: int, estimated: float, source: str, start: float) -> float:
    for index in range(100):
        t = start + index * 0.5
        if switch.choose("gate", detected, estimated, t)[1] == source:
            return t
    raise AssertionError(f"never switched to {source}")


def test_auto_switches_only_after_the_other_side_held_for_a_few_seconds() -> None:
    switch = CountSwitch("auto")
    assert switch.choose("gate", 5, 7.5, 0.0) == (5, "detector")  # within the model's noise: sparse
    dense_at = first_time(switch, 12, 30.2, "model", 0.5)
    assert 3.0 <= dense_at <= 5.0  # the detector misses most people: dense, after the dwell
    count, source = switch.choose("gate", 12, 30.2, dense_at + 0.5)
    assert source == "model" and abs(count - 30) <= 1
    for index in range(2):  # a moment close to the detector's count does not flip it back
        assert switch.choose("gate", 12, 13.0, dense_at + 1 + 0.5 * index)[1] == "model"
    sparse_at = first_time(switch, 12, 12.0, "detector", dense_at + 2)
    assert sparse_at - (dense_at + 2) >= 3.0
    assert switch.choose("plaza", 3, 10.0, 0.0) == (10, "model")  # places decide on their own; first call at once
    assert switch.choose("gate", 3, None, 60.0) == (3, "detector")  # no estimate: the detector


# --------------------------------------------------------------------------- updates of an open event


def gate_run(rule: ChangeRule, counts: list[int], step: float = 0.5) -> list[float]:
    """Times at which an update is sent for these counts (every frame `step` s apart)."""
    gate = ChangeGate(rule)
    gate.reset(counts[0])
    sent = []
    for index, count in enumerate(counts[1:], start=1):
        if gate.moved(count, index * step):
            sent.append(index * step)
            gate.reset(count)
    return sent


def test_a_wobbling_count_sends_nothing_and_a_lasting_change_sends_one_update() -> None:
    rule = ChangeRule(min_change=2, min_change_share=0.1, settle_s=3.0)
    assert rule.threshold(10) == 2 and rule.threshold(40) == 4
    wobble = [40, 43, 38, 42, 37, 41, 44, 39, 40, 43] * 4
    assert gate_run(rule, wobble) == []
    assert gate_run(ChangeRule(min_change=2), wobble)  # the old rule: an update on almost every frame
    grown = [40] * 4 + [48] * 20
    assert gate_run(rule, grown) == [5.0]  # 8 people more from 2.0 s, lasting 3 s


def test_a_change_that_falls_back_halfway_starts_over() -> None:
    rule = ChangeRule(min_change=4, settle_s=2.0)
    counts = [20, 24, 24, 24, 21, 24, 24, 24, 24, 24]  # back within 2 of 20 at 2.0 s
    assert gate_run(rule, counts) == [4.5]  # 2 s after the change came back at 2.5 s
