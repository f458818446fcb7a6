"""The counting model's pure parts on synthetic pictures and numbers with known answers.

Real footage with ground truth is in test_counting_mall.py; here each part is pinned on a case
where the right answer is known exactly: a regression that must recover its weights, a
background that must keep a standing crowd for minutes yet follow a change of exposure, a
perspective line through boxes drawn from that line, a model that must survive its own file
format and refuse broken ones.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from gateway.analytics.counting import (
    AnnotatedFrame,
    BackgroundSettings,
    CountingModel,
    CountSwitch,
    CrowdCounter,
    ModelFormatError,
    Perspective,
    TrainingError,
    fit_model,
)
from gateway.analytics.counting.background import BackgroundModel
from gateway.analytics.counting.features import CellGrid, FeatureExtractor, working_size
from gateway.analytics.counting.perspective import from_boxes, from_ground_plane, from_ramp
from gateway.analytics.counting.regression import kfold, nonnegative_ridge, shrunk_scales
from gateway.analytics.geometry import GroundPlane

SIZE = (640, 480)
RNG_SEED = 7


def floor(size=(320, 240), level=120) -> np.ndarray:
    """A plain floor with a little texture and sensor noise (uint8 grey)."""
    rng = np.random.default_rng(RNG_SEED)
    width, height = size
    pattern = (np.indices((height, width)).sum(axis=0) // 40 % 2) * 12
    return np.clip(level + pattern + rng.normal(0, 2, (height, width)), 0, 255).astype(np.uint8)


def with_people(image: np.ndarray, spots: list[tuple[int, int]], size=(8, 20)) -> np.ndarray:
    """Dark, striped 'people' (textured like clothing) at top-left corners `spots`."""
    out = image.copy()
    w, h = size
    for x, y in spots:
        out[y:y + h, x:x + w] = 40
        out[y + 2:y + h:4, x:x + w] = 170
    return out


def warmed(settings: BackgroundSettings | None = None, image: np.ndarray | None = None) -> BackgroundModel:
    model = BackgroundModel((320, 240), settings)
    model.warm_from([image if image is not None else floor()])
    return model


# --------------------------------------------------------------------------- regression


def test_nonnegative_ridge_recovers_weights_and_never_goes_negative() -> None:
    rng = np.random.default_rng(RNG_SEED)
    features = rng.uniform(0, 100, (40, 3))
    targets = features @ np.array([0.2, 0.0, 0.05])
    weights = nonnegative_ridge(features, targets, 1e-6)
    assert weights == pytest.approx([0.2, 0.0, 0.05], abs=1e-3)
    anti = nonnegative_ridge(features, -features[:, 0] + features[:, 1], 1e-6)
    assert (anti >= 0).all() and anti[0] == 0.0


def test_ridge_strength_shrinks_and_zero_features_get_zero_weight() -> None:
    rng = np.random.default_rng(RNG_SEED)
    features = np.c_[rng.uniform(0, 10, 30), np.zeros(30)]
    targets = 3 * features[:, 0]
    weak, strong = nonnegative_ridge(features, targets, 1e-6), nonnegative_ridge(features, targets, 1.0)
    assert weak[0] == pytest.approx(3, rel=1e-4) and strong[0] == pytest.approx(1.5, rel=1e-4)
    assert weak[1] == strong[1] == 0.0


def test_kfold_holds_out_every_item_once_and_interleaves() -> None:
    folds = kfold(12, 5)
    assert sorted(np.concatenate(folds).tolist()) == list(range(12))
    assert folds[0].tolist() == [0, 5, 10]
    assert len(kfold(3, 5)) == 3  # never more folds than items


def test_shrunk_scales_move_towards_the_data_but_stay_bounded() -> None:
    predicted = np.array([[10.0, 10.0], [20.0, 20.0]])
    actual = np.array([[20.0, 10.0], [40.0, 20.0]])
    free, shrunk = shrunk_scales(predicted, actual, 0.0), shrunk_scales(predicted, actual, 1.0)
    assert free == pytest.approx([2.0, 1.0]) and 1.0 < shrunk[0] < 2.0 and shrunk[1] == pytest.approx(1.0)
    assert shrunk_scales(predicted, actual * 100, 0.0)[0] == 4.0


# --------------------------------------------------------------------------- perspective


def test_perspective_from_boxes_finds_the_line_despite_outliers() -> None:
    rng = np.random.default_rng(RNG_SEED)
    feet = rng.uniform(100, 470, 200)
    heights = 0.2 * feet + 40 + rng.normal(0, 2, 200)
    heights[:20] *= 0.5  # sitting or half-hidden people
    boxes = np.c_[np.full(200, 100), feet - heights, np.full(200, 130), feet]
    perspective = from_boxes(boxes, 480)
    assert perspective.source == "detector"
    assert perspective.slope == pytest.approx(0.2, abs=0.01) and perspective.intercept == pytest.approx(40, abs=3)


def test_perspective_needs_enough_boxes_spread_over_rows() -> None:
    few = np.array([[0, 100, 10, 150]] * 10, float)
    assert from_boxes(few, 480) is None
    one_row = np.array([[0, 250 - 50, 10, 250]] * 100, float)
    assert from_boxes(one_row, 480) is None
    upside_down = np.array([[0, y - (300 - y) / 2, 10, y] for y in np.linspace(100, 400, 60)])
    assert from_boxes(upside_down, 480) is None


def test_perspective_from_a_ground_plane_and_from_a_ramp() -> None:
    # A camera looking down a street: the far edge (row 100) is 4x smaller than the near edge.
    image = np.array([[270, 100], [370, 100], [520, 480], [120, 480]], float)
    ground = np.array([[0, 20], [4, 20], [4, 0], [0, 0]], float)
    perspective = from_ground_plane(GroundPlane(image, ground).to_ground, SIZE)
    assert perspective.source == "calibration"
    assert perspective.height_at(480) == pytest.approx(1.7 * 400 / 4, rel=0.02)
    assert perspective.height_at(100) == pytest.approx(1.7 * 100 / 4, rel=0.05)
    ramp = from_ramp(30, 150, 480)
    assert ramp.height_at(0) == 30 and ramp.height_at(480) == pytest.approx(150)
    edge, area = ramp.row_weights(np.array([0.0, 480.0]), 480)
    assert edge == pytest.approx([5.0, 1.0]) and area == pytest.approx([25.0, 1.0])


# --------------------------------------------------------------------------- background


def test_no_background_and_no_count_until_warmed_up() -> None:
    settings = BackgroundSettings(warmup_samples=3, warmup_interval_s=5.0)
    model = BackgroundModel((320, 240), settings)
    image = floor()
    assert model.observe(image, 0.0) is None and model.warmup_left_s == pytest.approx(10.0)
    assert model.observe(image, 2.0) is None  # too soon for the next sample
    assert model.observe(image, 5.0) is None
    assert model.observe(image, 10.0) is not None and model.ready  # the frame that completes it counts


def test_median_warm_up_ignores_people_passing_through() -> None:
    frames = [with_people(floor(), [(20 + 40 * i, 100)]) for i in range(5)]
    model = BackgroundModel((320, 240))
    model.warm_from(frames)
    change = model.observe(floor(), 0.0)
    assert change.foreground.sum() == 0 and change.gradient.sum() == 0


def test_a_crowd_standing_for_ten_minutes_does_not_melt_into_the_background() -> None:
    model = warmed()
    crowd = with_people(floor(), [(x, y) for x in range(100, 220, 10) for y in (80, 100, 120)])
    first = model.observe(crowd, 0.0)
    for second in range(1, 601):
        last = model.observe(crowd, float(second))
    assert first.foreground.sum() > 0
    assert last.foreground.sum() >= 0.9 * first.foreground.sum()
    assert last.gradient.sum() >= 0.9 * first.gradient.sum()


def test_people_inside_detector_boxes_are_never_learnt() -> None:
    settings = BackgroundSettings(foreground_levels_per_s=5.0, dense_share=2.0)  # fast, no dense freeze
    model = warmed(settings)
    person = with_people(floor(), [(150, 100)])
    protect = np.zeros((240, 320), np.uint8)
    protect[95:125, 145:165] = 1
    first = model.observe(person, 0.0, protect)
    for second in range(1, 121):
        last = model.observe(person, float(second), protect)
    assert last.foreground.sum() == first.foreground.sum() > 0


def test_exposure_change_is_followed_without_foreground() -> None:
    model = warmed()
    brighter = np.clip(floor().astype(np.float32) * 1.12, 0, 255).astype(np.uint8)
    change = model.observe(brighter, 0.0)
    assert change.foreground.mean() < 0.01 and change.gradient.mean() < 0.01


def test_someone_who_left_after_the_warm_up_heals_quickly() -> None:
    model = warmed(image=with_people(floor(), [(150, 100)]))
    empty = floor()
    first = model.observe(empty, 0.0)
    for second in range(1, 61):
        last = model.observe(empty, float(second))
    assert first.foreground.sum() > 50
    assert last.foreground.sum() < 0.2 * first.foreground.sum()


# --------------------------------------------------------------------------- features and counter


def test_working_size_and_grid() -> None:
    assert working_size((640, 480)) == (320, 240)
    assert working_size((1920, 1080)) == (320, 180)
    assert working_size((200, 150)) == (200, 150)
    grid = CellGrid.for_frame((640, 480))
    assert grid.shape == (24, 32) and grid.scale == (0.5, 0.5)
    assert grid.pool(np.ones((240, 320), np.uint8)).sum() == pytest.approx(320 * 240)
    assert grid.coverage(np.array([[0, 0], [320, 0], [320, 480], [0, 480]])).sum() == pytest.approx(24 * 16, rel=0.02)
    row, column = grid.cells_of(np.array([[639, 479], [-5, 0]]))
    assert row.tolist() == [23, 0] and column.tolist() == [31, 0]


def test_feature_extractor_rejects_another_frame_size() -> None:
    extractor = FeatureExtractor(SIZE)
    with pytest.raises(ValueError, match="640x480"):
        extractor.observe(np.zeros((240, 320, 3), np.uint8), np.zeros((0, 4)), 0.0)


def synthetic_model(weights=(0.01, 0.0, 0.0), scales=((1.0,),), camera="cam1") -> CountingModel:
    return CountingModel(camera, SIZE, from_ramp(60, 60, 480), np.array(weights), np.array(scales))


def test_counter_counts_zones_and_never_counts_private_areas() -> None:
    left = np.array([[0, 0], [320, 0], [320, 480], [0, 480]], float)
    counter = CrowdCounter(SIZE, {"left": left}, masks=[np.array([[480, 0], [640, 0], [640, 480], [480, 480]], float)],
                           model=synthetic_model())
    features = np.zeros((24, 32, 3), np.float32)
    features[5, 2, 0] = 100  # left: 1 person
    features[5, 20, 0] = 200  # right, visible: 2 people
    features[5, 28, 0] = 500  # in the private area
    count = counter.estimate(features)
    assert count.total == pytest.approx(3.0) and count.zones["left"] == pytest.approx(1.0)
    heat = count.heat_map()
    assert heat.shape == (480, 640) and heat[5 * 20 + 10, 20 * 20 + 10] > heat[300, 100] >= 0


def test_counter_without_a_model_keeps_features_for_annotation() -> None:
    counter = CrowdCounter(SIZE)
    counter.warm_from([np.full((480, 640, 3), 120, np.uint8)])
    assert counter.observe(np.full((480, 640, 3), 120, np.uint8), np.zeros((0, 4)), 0.0) is None
    assert counter.last_features.shape == (24, 32, 3)
    counter.use_model(synthetic_model())
    assert counter.observe(np.full((480, 640, 3), 120, np.uint8), np.zeros((0, 4)), 1.0).total == 0.0
    with pytest.raises(ModelFormatError, match="640x480"):
        CrowdCounter((768, 576), model=synthetic_model())


# --------------------------------------------------------------------------- model file format


def test_model_round_trips_through_json() -> None:
    model = synthetic_model(weights=(0.01, 0.002, 0.0001), scales=((1.1, 0.9), (1.0, 0.8)))
    again = CountingModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert again.camera_id == "cam1" and again.frame_size == SIZE
    assert again.weights == pytest.approx(model.weights) and again.region_scale == pytest.approx(model.region_scale)
    assert again.perspective.height_at(240) == pytest.approx(60)
    assert again.cell_multipliers() == pytest.approx(model.cell_multipliers())


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format="other"), "not a counting model"),
    (lambda d: d.update(version=99), "version 99 is not supported"),
    (lambda d: d.update(frame_size=[640]), "frame_size"),
    (lambda d: d.update(weights=[0.1, -1, 0]), "must not be negative"),
    (lambda d: d.update(weights=[0.1, float("nan"), 0]), "finite numbers"),
    (lambda d: d.update(weights="many"), "weights"),
    (lambda d: d.update(features=["a", "b", "c"]), "features"),
    (lambda d: d.update(grid={"working_size": [100, 100], "cell_px": 10}), "grid"),
    (lambda d: d.pop("perspective"), "'perspective' must be an object"),
    (lambda d: d.update(region_scale=[[1, -2]]), "region_scale"),
    (lambda d: d.update(camera_id=""), "camera_id"),
])
def test_broken_model_data_is_refused_with_the_reason(change, message) -> None:
    data = synthetic_model().to_dict()
    change(data)
    with pytest.raises(ModelFormatError, match=message):
        CountingModel.from_dict(data)


def test_model_for_another_camera_or_frame_size_is_refused() -> None:
    model = synthetic_model()
    model.check_fits("cam1", (640, 480))
    with pytest.raises(ModelFormatError, match="camera 'cam1', not 'gate'"):
        model.check_fits("gate", None)
    with pytest.raises(ModelFormatError, match="640x480 frames, not 1280x720"):
        model.check_fits("cam1", (1280, 720))


# --------------------------------------------------------------------------- fitting


def synthetic_frames(count: int, rng: np.random.Generator) -> list[AnnotatedFrame]:
    """Frames whose 'gradient' feature is 100 per person, spread where the people are."""
    frames = []
    for _ in range(count):
        people = rng.integers(5, 40)
        points = np.c_[rng.uniform(0, 640, people), rng.uniform(0, 400, people)]
        features = np.zeros((24, 32, 3), np.float32)
        for x, y in points:
            features[min(int((y + 15) / 20), 23), int(x / 20), 0] += 100
        features[..., 2] = rng.uniform(0, 50, (24, 32))  # noise the fit must learn to ignore
        frames.append(AnnotatedFrame(features, points))
    return frames


def test_fit_recovers_a_known_relation_and_reports_cross_validation() -> None:
    rng = np.random.default_rng(RNG_SEED)
    result = fit_model(synthetic_frames(20, rng), "cam1", SIZE, from_ramp(60, 60, 480))
    assert result.validation.folds == 5 and result.validation.mae < 0.5 and result.validation.within_20 == 1.0
    counter = CrowdCounter(SIZE, model=result.model)
    test = synthetic_frames(10, rng)
    errors = [abs(counter.estimate(f.features).total - len(f.points)) for f in test]
    assert max(errors) < 1.0
    assert result.model.training["frames"] == 20 and result.model.training["cross_validation"]["mae"] < 0.5


def test_fit_refuses_too_few_frames_and_empty_annotations() -> None:
    rng = np.random.default_rng(RNG_SEED)
    with pytest.raises(TrainingError, match="at least 5 annotated frames, got 4"):
        fit_model(synthetic_frames(4, rng), "cam1", SIZE, from_ramp(60, 60, 480))
    empty = [AnnotatedFrame(f.features, np.zeros((0, 2))) for f in synthetic_frames(6, rng)]
    with pytest.raises(TrainingError, match="no person is marked"):
        fit_model(empty, "cam1", SIZE, from_ramp(60, 60, 480))
    blank = [AnnotatedFrame(np.zeros((24, 32, 3), np.float32), f.points) for f in synthetic_frames(6, rng)]
    with pytest.raises(TrainingError, match="no change against the background"):
        fit_model(blank, "cam1", SIZE, from_ramp(60, 60, 480))


# --------------------------------------------------------------------------- the switch


def test_switch_modes() -> None:
    assert CountSwitch("detector").choose(None, 10, 40.0, 0.0) == (10, "detector")
    assert CountSwitch("model").choose(None, 10, 7.4, 0.0) == (7, "model")
    assert CountSwitch("model").choose(None, 10, None, 0.0) == (10, "detector")  # warming up


def test_background_settings_round_trip_and_ignore_unknown_keys() -> None:
    settings = BackgroundSettings(warmup_samples=7, gradient_threshold=90.0)
    data = settings.to_dict() | {"future_key": 1}
    assert BackgroundSettings.from_dict(data) == settings
    assert settings.warmup_s == pytest.approx(30.0)


def test_perspective_dict_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Perspective.from_dict({"slope": "nan", "intercept": 1})
    assert Perspective.from_dict(from_ramp(10, 20, 100).to_dict(100)).height_at(100) == pytest.approx(20)


def test_synthetic_people_make_features_where_they_stand() -> None:
    extractor = FeatureExtractor(SIZE)
    empty = cv2.cvtColor(cv2.resize(floor(), SIZE), cv2.COLOR_GRAY2BGR)
    extractor.warm_from([empty])
    people = cv2.cvtColor(cv2.resize(with_people(floor(), [(50, 50), (250, 180)]), SIZE), cv2.COLOR_GRAY2BGR)
    features = extractor.observe(people, np.zeros((0, 4)), 0.0)
    hot = np.argwhere(features[..., 0] > 0)
    assert {tuple(cell) for cell in hot} <= {(r, c) for r in range(4, 8) for c in range(4, 7)} | \
        {(r, c) for r in range(17, 21) for c in range(24, 27)}
    assert features[..., 0].sum() > 0 and features[..., 2].sum() > 0
