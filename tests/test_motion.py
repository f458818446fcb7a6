"""Motion gate: skips a still scene, passes motion inside the region only, never goes blind."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.video.motion import MotionGate, region_mask, thresholds

H, W = 144, 192


def scene(seed: int = 0, noise: float = 2.0) -> np.ndarray:
    """A textured grey-green background with fresh sensor noise each call."""
    rng = np.random.default_rng(seed)
    base = np.tile(np.linspace(60, 160, W, dtype=np.float32), (H, 1))[..., None].repeat(3, 2)
    base[:, :, 1] += 20
    return np.clip(base + rng.normal(0, noise, base.shape), 0, 255).astype(np.uint8)


def with_person(image: np.ndarray, x: int, y: int, w: int = 8, h: int = 22) -> np.ndarray:
    out = image.copy()
    out[y:y + h, x:x + w] = 25  # a dark coat on a lit lawn
    return out


def test_still_scene_runs_only_every_max_skip_s() -> None:
    gate = MotionGate(sensitivity=0.5, max_skip_s=5)
    runs = [gate.check(scene(seed=i), t=i * 0.5).run for i in range(60)]  # 30 s at 2 fps
    assert sum(runs) == 6  # first frame, then 5, 10, 15, 20, 25 s
    assert gate.skip_ratio == pytest.approx(54 / 60)


def test_person_walking_in_is_passed_immediately() -> None:
    gate = MotionGate(sensitivity=0.5, max_skip_s=5)
    for i in range(6):
        gate.check(scene(seed=i), t=i * 0.5)
    decision = gate.check(with_person(scene(seed=99), 0, 60), t=3.5)  # at the left edge
    assert decision.run and decision.reason == "motion"


def test_standing_person_is_still_seen_every_max_skip_s() -> None:
    gate = MotionGate(sensitivity=0.5, max_skip_s=4)
    gate.check(scene(), t=0)
    assert gate.check(with_person(scene(1), 90, 60), t=1).run
    standing = [gate.check(with_person(scene(i), 90, 60), t=1 + i * 0.5).run for i in range(1, 17)]
    assert standing.count(True) == 2  # at 5 s and 9 s: never longer than max_skip_s blind


def test_motion_outside_the_region_is_ignored() -> None:
    region = region_mask((H * 4, W * 4), [np.array([[0, 0], [300, 0], [300, 300], [0, 300]])])
    gate = MotionGate(region, sensitivity=1.0, max_skip_s=100)
    gate.check(scene(), t=0)
    assert not gate.check(with_person(scene(1), 150, 100), t=1).run   # bottom right: outside
    assert gate.check(with_person(scene(2), 20, 20), t=2).run          # top left: inside


def test_private_mask_cuts_out_of_the_region_and_zones_grow_upwards() -> None:
    zone = np.array([[0, 100], [100, 100], [100, 140], [0, 140]])
    private = np.array([[0, 100], [50, 100], [50, 140], [0, 140]])
    mask = region_mask((H, W), [zone], [private], grow_up_px=30)
    assert mask[120, 75] == 255 and mask[120, 25] == 0   # zone, private part
    assert mask[75, 75] == 255 and mask[65, 75] == 0     # grown 30 px up, not more


def test_force_runs_every_frame_while_an_event_is_open() -> None:
    gate = MotionGate(max_skip_s=60)
    image = scene()
    assert all(gate.check(image, t=i, force=True).run for i in range(5))
    assert not gate.check(image, t=6).run


def test_sensitivity_orders_thresholds_and_disabled_gate_passes_all() -> None:
    low, high = thresholds(0.1), thresholds(1.0)
    assert low[0] > high[0] and low[1] > high[1]
    with pytest.raises(ValueError):
        thresholds(0)
    gate = MotionGate(enabled=False)
    assert all(gate.check(scene(), t=i).run for i in range(3)) and gate.skip_ratio == 0


def test_time_jump_and_reset_run_the_next_frame() -> None:
    gate = MotionGate(max_skip_s=60)
    gate.check(scene(), t=100)
    assert gate.check(scene(1), t=3).reason == "time_jump"   # stream restarted after a reconnect
    gate.reset()
    assert gate.check(scene(2), t=4).reason == "first"
