"""The scheduler's fairness: cameras share the detector by time, so a tiled camera pays for its tiles."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from gateway.camera.scheduler import USAGE_HALF_LIFE_S, DetectorUsage, pick_next


@dataclass
class Camera:
    id: str


@dataclass
class FakeWorker:
    """Always has a frame; `cost_s` is what analysing one of its frames takes."""

    name: str
    cost_s: float
    last_analysed_at: float = 0.0
    camera: Camera = field(init=False)

    def __post_init__(self) -> None:
        self.camera = Camera(self.name)

    def has_new_frame(self) -> bool:
        return True


def share_of_time(workers: list[FakeWorker], seconds: float) -> dict[str, float]:
    """Run the scheduler's choice on an overloaded box for `seconds` of simulated time."""
    usage, now = DetectorUsage(), 0.0
    used = {worker.name: 0.0 for worker in workers}
    while now < seconds:
        worker = pick_next(workers, usage, now)
        assert worker is not None
        worker.last_analysed_at = now
        now += worker.cost_s
        usage.add(worker.name, worker.cost_s, now)
        used[worker.name] += worker.cost_s
    return {name: spent / now for name, spent in used.items()}


def test_a_tiled_camera_gets_an_even_share_of_time_not_of_frames() -> None:
    tiled = FakeWorker("far", cost_s=0.27)  # 9 detector runs a frame
    near = [FakeWorker(f"near{i}", cost_s=0.03) for i in range(2)]
    shares = share_of_time([tiled, *near], 300)
    assert shares["far"] == pytest.approx(1 / 3, abs=0.05)
    assert shares["near0"] == pytest.approx(1 / 3, abs=0.05)


def test_equal_cameras_take_turns() -> None:
    workers = [FakeWorker(f"cam{i}", cost_s=0.03) for i in range(3)]
    order = []
    usage, now = DetectorUsage(), 0.0
    for _ in range(9):
        worker = pick_next(workers, usage, now)
        assert worker is not None
        order.append(worker.name)
        worker.last_analysed_at = now
        now += worker.cost_s
        usage.add(worker.name, worker.cost_s, now)
    assert order == ["cam0", "cam1", "cam2"] * 3


def test_usage_decays_with_its_half_life() -> None:
    usage = DetectorUsage()
    usage.add("a", 1.0, now=0.0)
    assert usage.used("a", USAGE_HALF_LIFE_S) == pytest.approx(0.5)
    assert usage.used("unknown", 5.0) == 0.0
    usage.forget("a")
    assert usage.used("a", 0.0) == 0.0


def test_no_ready_camera_means_nothing_to_do() -> None:
    class Idle(FakeWorker):
        def has_new_frame(self) -> bool:
            return False

    assert pick_next([Idle("a", 0.1)], DetectorUsage(), 0.0) is None
