"""Zones, masks, foot points and ground distances, alone and as the pipeline applies them."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from detectors.base import Detections
from gateway.analytics import CameraAnalytics
from gateway.analytics.geometry import (
    GroundPlane,
    PersonScale,
    foot_points,
    ground_model,
    points_in_polygon,
    polygon_area,
    polygon_to_frame,
)
from gateway.config.models import Camera, GatewaySection

GATEWAY = GatewaySection(id="gw-test")
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def camera(**extra) -> Camera:
    return Camera.model_validate({"id": "cam1", "source": {"rtsp": "rtsp://127.0.0.1/s"}, **extra})


def person(x: float, foot_y: float, height: float = 170.0, score: float = 0.9) -> list[float]:
    return [x - height * 0.2, foot_y - height, x + height * 0.2, foot_y, score]


def detections(*people: list[float]) -> Detections:
    rows = np.array(people, dtype=np.float32).reshape(-1, 5)
    return Detections(rows[:, :4], rows[:, 4], np.zeros(len(rows), np.int32))


# --------------------------------------------------------------------------- pure geometry


def test_foot_point_is_bottom_centre():
    assert foot_points(np.array([[10, 20, 30, 120]])).tolist() == [[20, 120]]


def test_points_in_concave_polygon():
    l_shape = np.array([[0, 0], [10, 0], [10, 4], [4, 4], [4, 10], [0, 10]], float)
    points = np.array([[2, 2], [8, 2], [2, 8], [8, 8], [-1, 5], [11, 1]], float)
    assert points_in_polygon(points, l_shape).tolist() == [True, True, True, False, False, False]
    assert points_in_polygon(np.zeros((0, 2)), l_shape).shape == (0,)


def test_polygon_area_shoelace():
    assert polygon_area(np.array([[0, 0], [4, 0], [4, 3], [0, 3]], float)) == 12.0


def test_pixel_polygons_scale_from_resolution_to_frame_size():
    cam = camera(resolution=[1920, 1080], zones=[{"id": "z", "polygon": [[0, 0], [1920, 0], [960, 1080]]}])
    scaled = polygon_to_frame(cam.zones[0].polygon, cam, (640, 360))
    assert scaled.tolist() == [[0, 0], [640, 0], [320, 360]]


def test_normalized_polygons_multiply_by_frame_size():
    cam = camera(coordinates="normalized", zones=[{"id": "z", "polygon": [[0, 0], [0.5, 0], [0.5, 1]]}])
    assert polygon_to_frame(cam.zones[0].polygon, cam, (800, 600)).tolist() == [[0, 0], [400, 0], [400, 600]]


def test_person_scale_measures_in_person_heights():
    boxes = np.array([person(100, 500)[:4], person(270, 500)[:4]])  # 170 px tall, 170 px apart
    assert PersonScale().distances_m(boxes)[0, 1] == pytest.approx(1.7)
    assert PersonScale().area_m2(np.array([[0, 0], [1, 0], [1, 1]], float)) is None


def perspective_plane() -> GroundPlane:
    """A tilted camera: a 10 m x 20 m ground rectangle seen as a trapezoid; horizon at y=67."""
    image = np.array([[200, 600], [600, 600], [450, 200], [350, 200]], float)
    ground = np.array([[0, 0], [10, 0], [10, 20], [0, 20]], float)
    return GroundPlane(image, ground)


def test_ground_plane_maps_calibration_points_and_areas():
    plane = perspective_plane()
    corners = plane.to_ground(np.array([[200, 600], [450, 200]], float))
    np.testing.assert_allclose(corners, [[0, 0], [10, 20]], atol=1e-6)
    trapezoid = np.array([[200, 600], [600, 600], [450, 200], [350, 200]], float)
    assert plane.area_m2(trapezoid) == pytest.approx(200.0)


def test_ground_plane_distances_use_foot_points():
    plane = perspective_plane()
    boxes = np.array([[190, 500, 210, 600], [590, 500, 610, 600]], float)  # feet on the near edge
    assert plane.distances_m(boxes)[0, 1] == pytest.approx(10.0)


def test_points_beyond_the_horizon_have_no_ground_position():
    plane = perspective_plane()
    # The trapezoid's sides meet at y=67: the horizon. Above it there is no ground.
    assert np.isnan(plane.to_ground(np.array([[400, 50]], float))).all()
    assert plane.area_m2(np.array([[0, 0], [800, 0], [800, 600], [0, 600]], float)) is None


def test_degenerate_calibration_is_rejected():
    line = np.array([[0, 0], [1, 1], [2, 2], [3, 3]], float)
    with pytest.raises(ValueError, match="degenerate"):
        GroundPlane(line, line)


def test_calibration_points_scale_like_polygons():
    cam = camera(
        resolution=[1600, 1200],
        calibration={
            "image_points": [[400, 1200], [1200, 1200], [900, 400], [700, 400]],
            "ground_points_m": [[0, 0], [10, 0], [10, 20], [0, 20]],
        },
    )
    plane = ground_model(cam, (800, 600))
    np.testing.assert_allclose(plane.to_ground(np.array([[450, 200]], float)), [[10, 20]], atol=1e-6)


# --------------------------------------------------------------------------- as the pipeline uses it


MASKED = camera(
    resolution=[1600, 1200],
    masks=[{"name": "window", "polygon": [[0, 0], [400, 0], [400, 400], [0, 400]]}],
    zones=[{"id": "door", "polygon": [[800, 0], [1600, 0], [1600, 1200], [800, 1200]]}],
)


def test_prepare_fills_masks_on_a_copy():
    analytics = CameraAnalytics(MASKED, GATEWAY, (800, 600))
    frame = np.full((600, 800, 3), 200, np.uint8)
    masked = analytics.prepare(frame)
    assert masked is not frame and (frame == 200).all()
    assert (masked[:200, :200] != 200).all() and (masked[201:, 201:] == 200).all()


def test_prepare_without_masks_returns_the_frame_itself():
    analytics = CameraAnalytics(camera(), GATEWAY, (800, 600))
    frame = np.zeros((600, 800, 3), np.uint8)
    assert analytics.prepare(frame) is frame


def test_frames_of_the_wrong_size_are_refused():
    analytics = CameraAnalytics(camera(), GATEWAY, (800, 600))
    with pytest.raises(ValueError, match="640x480"):
        analytics.prepare(np.zeros((480, 640, 3), np.uint8))


def test_people_standing_in_a_mask_are_dropped():
    analytics = CameraAnalytics(MASKED, GATEWAY, (800, 600))
    # The mask is 0..200 px in the 800x600 frame (0..400 in the 1600x1200 drawing).
    inside, outside = person(100, 150, 100), person(300, 500, 100)
    result = analytics.process(detections(inside, outside), t=0.0, now=NOW)
    np.testing.assert_allclose(result.boxes, [outside[:4]])
    assert result.track_ids.tolist() == [1]


def test_zone_counts_use_scaled_polygons_and_foot_points():
    analytics = CameraAnalytics(MASKED, GATEWAY, (800, 600))
    # The door zone is x >= 400 in the frame. This person's box straddles it, their feet do not.
    straddling = [330, 300, 430, 390, 0.9]
    standing_in = person(600, 500, 100)
    result = analytics.process(detections(straddling, standing_in), t=0.0, now=NOW)
    assert result.zone_counts == {"door": 1}


def test_normalized_zones_in_the_pipeline():
    cam = camera(coordinates="normalized", zones=[{"id": "left", "polygon": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}])
    analytics = CameraAnalytics(cam, GATEWAY, (1000, 500))
    result = analytics.process(detections(person(200, 400, 100), person(700, 400, 100)), t=0.0, now=NOW)
    assert result.zone_counts == {"left": 1}
