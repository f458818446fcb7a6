"""Shared test fixtures: the real model and video in ../shared, and a scratch directory."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
YOLOX_NANO = SHARED / "models" / "yolox_nano.onnx"
YOLOV8_FALL = SHARED / "models" / "yolov8s_people_normal_fall.onnx"
VTEST = SHARED / "data" / "vtest.avi"
VTEST_H264 = SHARED / "data" / "vtest_h264.mp4"
"""The same scene as a camera sends it: H.264, 10 fps, a keyframe every 2 s, no B-frames."""


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"test asset missing: {path} (CI clones the project with ../shared beside it)")
    return path


@pytest.fixture(scope="session")
def yolox_model() -> Path:
    return _require(YOLOX_NANO)


@pytest.fixture(scope="session")
def yolov8_model() -> Path:
    return _require(YOLOV8_FALL)


@pytest.fixture(scope="session")
def vtest_video() -> Path:
    return _require(VTEST)
