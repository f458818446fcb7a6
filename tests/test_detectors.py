"""Pure unit tests of the detector pieces: letterbox, layout detection, decoders, class filter, NMS.

Synthetic tensors with boxes planted at known anchors give exact expected boxes; no model runs.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from detectors import DetectorError, DetectorSettings, create_detector
from detectors.decode import (
    Decoder,
    Layout,
    default_names,
    detect_layout,
    is_ultralytics,
    nms,
    parse_names,
    resolve_person_classes,
    yolox_anchor_count,
    yolox_grid,
)
from detectors.preprocess import PAD_VALUE, ULTRALYTICS, YOLOX, Letterboxer, fit

ULTRA_META = {"author": "Ultralytics", "names": "{0: 'Normal', 1: 'Fall'}", "stride": "32",
              "imgsz": "[640, 640]", "task": "detect", "version": "8.3.202"}


# --------------------------------------------------------------------------- letterbox


@pytest.mark.parametrize("convention", [YOLOX, ULTRALYTICS], ids=lambda c: c.name)
@pytest.mark.parametrize(
    "frame_wh, input_wh",
    [((768, 576), (416, 416)), ((480, 640), (416, 416)), ((1920, 1080), (640, 384)), ((300, 200), (640, 640))],
)
def test_letterbox_round_trip_within_a_pixel(convention, frame_wh, input_wh):
    width, height = frame_wh
    transform, _, _ = fit(width, height, input_wh, convention.centred)
    boxes = np.array([[10, 20, 110, 170], [0, 0, width, height], [width - 50, height - 40, width, height]],
                     np.float32)
    back = transform.to_source(transform.to_input(boxes))
    np.testing.assert_allclose(back, boxes, atol=1.0)


@pytest.mark.parametrize("convention", [YOLOX, ULTRALYTICS], ids=lambda c: c.name)
def test_letterbox_places_the_image_where_the_transform_says(convention):
    """A white block in the frame lands, in the tensor, where to_input maps its box."""
    frame = np.zeros((576, 768, 3), np.uint8)
    frame[100:300, 200:400] = 255
    tensor, transform = Letterboxer((416, 416), convention)(frame)
    x1, y1, x2, y2 = transform.to_input(np.array([[200, 100, 400, 300]], np.float32))[0]
    white = 255 * convention.scale
    inside = tensor[0, :, int(y1) + 2 : int(y2) - 2, int(x1) + 2 : int(x2) - 2]
    assert np.allclose(inside, white)
    assert tensor[0, :, int(y2) + 3, int(x1) + 3 : int(x2) - 3].max() == 0  # black just below


def test_yolox_letterbox_pads_bottom_right_bgr_0_255():
    frame = np.zeros((576, 768, 3), np.uint8)
    frame[..., 0] = 200  # blue
    tensor, transform = Letterboxer((416, 416), YOLOX)(frame)
    assert (transform.pad_x, transform.pad_y) == (0, 0)
    assert tensor.shape == (1, 3, 416, 416) and tensor.dtype == np.float32
    assert tensor[0, 0, 0, 0] == 200 and tensor[0, 2, 0, 0] == 0  # channel 0 is blue
    assert np.all(tensor[0, :, 312:, :] == PAD_VALUE)  # 576 * 416/768 = 312 rows of image


def test_ultralytics_letterbox_pads_centred_rgb_0_1():
    frame = np.zeros((576, 768, 3), np.uint8)
    frame[..., 0] = 255  # blue
    tensor, transform = Letterboxer((640, 640), ULTRALYTICS)(frame)
    assert (transform.pad_x, transform.pad_y) == (0, 80)
    assert tensor[0, 2, 320, 320] == pytest.approx(1.0) and tensor[0, 0, 320, 320] == 0  # RGB
    assert np.allclose(tensor[0, :, :80], PAD_VALUE / 255) and np.allclose(tensor[0, :, -80:], PAD_VALUE / 255)


def test_letterbox_refills_padding_when_the_frame_size_changes():
    boxer = Letterboxer((416, 416), YOLOX)
    boxer(np.zeros((576, 768, 3), np.uint8))
    tensor, transform = boxer(np.zeros((768, 576, 3), np.uint8))  # portrait now: pad on the right
    assert transform.scale == pytest.approx(416 / 768)
    assert np.all(tensor[0, :, :, 312:] == PAD_VALUE)
    assert np.all(tensor[0, :, :, :312] == 0)


def test_to_source_clips_to_the_frame():
    transform, _, _ = fit(768, 576, (416, 416), centred=False)
    out = transform.to_source(np.array([[-10, -10, 500, 500]], np.float32))
    np.testing.assert_array_equal(out, [[0, 0, 768, 576]])


# --------------------------------------------------------------------------- YOLOX decoder


def _yolox_output(input_wh=(416, 416), nc=80) -> np.ndarray:
    return np.zeros((1, yolox_anchor_count(input_wh), 5 + nc), np.float32)


def _plant_yolox(out, stride_index, gx, gy, raw_box, obj, cls, score, width=416, height=416):
    """Write one anchor at grid cell (gx, gy) of a stride; returns its row."""
    offset = sum((width // s) * (height // s) for s in (8, 16, 32)[:stride_index])
    row = offset + gy * (width // (8, 16, 32)[stride_index]) + gx
    out[0, row, :4] = raw_box
    out[0, row, 4] = obj
    out[0, row, 5 + cls] = score
    return row


def test_yolox_grid_is_row_major_per_stride():
    grid, stride = yolox_grid((416, 416))
    assert grid.shape == (3549, 2) and yolox_anchor_count((416, 416)) == 3549
    assert tuple(grid[52 * 5 + 10]) == (10, 5) and stride[52 * 5 + 10] == 8
    assert tuple(grid[2704 + 26 * 3 + 7]) == (7, 3) and stride[2704 + 26 * 3 + 7] == 16
    assert tuple(grid[-1]) == (12, 12) and stride[-1] == 32


def test_yolox_decoder_recovers_planted_boxes_in_source_pixels():
    out = _yolox_output()
    # stride 8, cell (10, 5): cx=(10+0.5)*8=84, cy=(5+0.5)*8=44, w=4*8=32, h=8*8=64
    _plant_yolox(out, 0, 10, 5, [0.5, 0.5, np.log(4), np.log(8)], obj=0.9, cls=0, score=0.8)
    # stride 32, cell (3, 9): cx=(3+0.25)*32=104, cy=(9+0.5)*32=304, w=2*32=64, h=3*32=96
    _plant_yolox(out, 2, 3, 9, [0.25, 0.5, np.log(2), np.log(3)], obj=0.7, cls=0, score=0.6)
    decoder = Decoder(Layout("yolox", True, 80), (416, 416), np.array([0]), confidence=0.3, nms_iou=0.45)
    found = decoder(out)
    order = np.argsort(-found.scores)
    np.testing.assert_allclose(found.scores[order], [0.72, 0.42], rtol=1e-6)
    np.testing.assert_allclose(found.boxes[order], [[68, 12, 100, 76], [72, 256, 136, 352]], atol=1e-3)
    # a 832×624 frame is scaled by exactly 0.5 into 416×416 (pad bottom): source = input × 2
    transform, _, _ = fit(832, 624, (416, 416), centred=False)
    np.testing.assert_allclose(transform.to_source(found.boxes[order]),
                               [[136, 24, 200, 152], [144, 512, 272, 624]], atol=1e-3)


def test_yolox_decoder_rejects_a_wrong_anchor_count():
    decoder = Decoder(Layout("yolox", True, 80), (416, 416), np.array([0]), 0.3, 0.45)
    with pytest.raises(DetectorError, match="3549"):
        decoder(np.zeros((1, 3000, 85), np.float32))


def test_class_filter_drops_other_classes_and_low_scores():
    out = _yolox_output()
    _plant_yolox(out, 0, 5, 5, [0, 0, 1, 1], obj=0.9, cls=2, score=0.9)  # a car
    _plant_yolox(out, 0, 20, 20, [0, 0, 1, 1], obj=0.5, cls=0, score=0.5)  # person 0.25 < 0.3
    row = _plant_yolox(out, 0, 40, 40, [0, 0, 1, 1], obj=0.9, cls=0, score=0.6)  # person, car beats it
    out[0, row, 5 + 2] = 0.7
    decoder = Decoder(Layout("yolox", True, 80), (416, 416), np.array([0]), 0.3, 0.45)
    assert len(decoder(out).scores) == 0


# --------------------------------------------------------------------------- Ultralytics / YOLOv5


def _ultralytics_output(boxes_scores: list[tuple[list[float], list[float]]], anchors=8400) -> np.ndarray:
    """1×(4+nc)×N with the given (cx,cy,w,h), class scores at the first anchors."""
    nc = len(boxes_scores[0][1])
    out = np.zeros((1, 4 + nc, anchors), np.float32)
    for i, (box, scores) in enumerate(boxes_scores):
        out[0, :4, 100 * i + 7] = box
        out[0, 4:, 100 * i + 7] = scores
    return out


@pytest.mark.parametrize("transposed", [False, True])
def test_ultralytics_decoder_reads_both_orientations(transposed):
    out = _ultralytics_output([([320, 240, 40, 100], [0.9, 0.0]), ([100, 500, 60, 30], [0.1, 0.6])])
    layout = Layout("ultralytics", transposed, 2)
    if transposed:
        out = np.ascontiguousarray(out.transpose(0, 2, 1))
    found = Decoder(layout, (640, 640), np.array([0, 1]), 0.3, 0.45)(out)
    order = np.argsort(-found.scores)
    np.testing.assert_allclose(found.boxes[order], [[300, 190, 340, 290], [70, 485, 130, 515]])
    np.testing.assert_allclose(found.scores[order], [0.9, 0.6])
    np.testing.assert_array_equal(found.class_ids[order], [0, 1])


def test_ultralytics_decoder_keeps_only_the_configured_person_classes():
    out = _ultralytics_output([([320, 240, 40, 100], [0.9, 0.0]), ([100, 500, 60, 30], [0.1, 0.6])])
    found = Decoder(Layout("ultralytics", False, 2), (640, 640), np.array([0]), 0.3, 0.45)(out)
    np.testing.assert_array_equal(found.class_ids, [0])


def test_yolov5_decoder_multiplies_objectness_without_grid_decoding():
    out = np.zeros((1, 25200, 5 + 3), np.float32)
    out[0, 42] = [200, 100, 20, 60, 0.8, 0.9, 0.1, 0.0]
    out[0, 43] = [50, 50, 10, 10, 0.2, 0.9, 0.0, 0.0]  # 0.18 < 0.3
    found = Decoder(Layout("yolov5", True, 3), (640, 640), np.array([0]), 0.3, 0.45)(out)
    np.testing.assert_allclose(found.boxes, [[190, 70, 210, 130]])
    np.testing.assert_allclose(found.scores, [0.72], rtol=1e-6)


# --------------------------------------------------------------------------- NMS


def test_nms_suppresses_overlaps_and_keeps_disjoint_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    keep = nms(boxes, np.array([0.9, 0.8, 0.7], np.float32), 0.45)
    assert sorted(keep.tolist()) == [0, 2]


def test_nms_uses_exact_iou():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], np.float32)  # IoU = 50/150 = 1/3
    scores = np.array([0.9, 0.8], np.float32)
    assert nms(boxes, scores, 0.33).tolist() == [0]
    assert sorted(nms(boxes, scores, 0.34).tolist()) == [0, 1]


def test_nms_of_nothing_is_nothing():
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.45).shape == (0,)


def test_nms_is_agnostic_across_person_classes():
    """A person scored as both Normal and Fall by two anchors gives one box, not two."""
    out = _ultralytics_output([([320, 240, 40, 100], [0.9, 0.0]), ([322, 242, 40, 100], [0.0, 0.8])])
    found = Decoder(Layout("ultralytics", False, 2), (640, 640), np.array([0, 1]), 0.3, 0.45)(out)
    assert len(found.scores) == 1 and found.class_ids[0] == 0


# --------------------------------------------------------------------------- classes and metadata


def test_parse_names_reads_the_ultralytics_dict_literal():
    assert parse_names(ULTRA_META) == {0: "Normal", 1: "Fall"}
    assert parse_names({"names": "['a', 'b']"}) == {0: "a", 1: "b"}
    assert parse_names({}) is None


def test_parse_names_never_evaluates_code():
    with pytest.raises(DetectorError, match="not a Python literal"):
        parse_names({"names": "__import__('os').system('echo pwned')"})


def test_person_classes_default_to_person_else_class_0():
    assert resolve_person_classes((), default_names(80)).tolist() == [0]
    assert resolve_person_classes((), {0: "Normal", 1: "Fall"}).tolist() == [0]
    assert resolve_person_classes((), {0: "car", 1: "Person"}).tolist() == [1]


def test_person_classes_by_name_or_id():
    names = {0: "Normal", 1: "Fall"}
    assert resolve_person_classes(("Normal", "fall"), names).tolist() == [0, 1]
    assert resolve_person_classes((1,), names).tolist() == [1]


def test_unknown_person_class_lists_the_models_classes():
    with pytest.raises(DetectorError, match=r"'pedestrian'.*0: 'Normal', 1: 'Fall'"):
        resolve_person_classes(("pedestrian",), {0: "Normal", 1: "Fall"})
    with pytest.raises(DetectorError, match="7"):
        resolve_person_classes((7,), {0: "Normal", 1: "Fall"})


def test_default_names_are_coco_for_80_classes():
    assert default_names(80)[0] == "person" and default_names(80)[79] == "toothbrush"
    assert default_names(2) == {0: "class0", 1: "class1"}


# --------------------------------------------------------------------------- layout detection


def test_layout_yolox_without_metadata():
    assert detect_layout((1, 3549, 85), (416, 416), None, False) == Layout("yolox", True, 80)
    assert detect_layout((1, 8400, 85), (640, 640), None, False) == Layout("yolox", True, 80)


def test_layout_ultralytics_from_metadata_both_orientations():
    names = parse_names(ULTRA_META)
    assert is_ultralytics(ULTRA_META)
    assert detect_layout((1, 6, 8400), (640, 640), names, True) == Layout("ultralytics", False, 2)
    assert detect_layout((1, 8400, 6), (640, 640), names, True) == Layout("ultralytics", True, 2)


def test_layout_yolov5_needs_the_metadata_to_differ_from_yolox():
    """1×8400×85 at 640 is YOLOX without metadata, YOLOv5 with Ultralytics metadata."""
    coco = default_names(80)
    assert detect_layout((1, 8400, 85), (640, 640), coco, True) == Layout("yolov5", True, 80)
    assert detect_layout((1, 8400, 85), (640, 640), None, False).name == "yolox"
    assert detect_layout((1, 25200, 85), (640, 640), coco, True).name == "yolov5"


def test_layout_headerless_ultralytics_export():
    assert detect_layout((1, 84, 8400), (640, 640), None, False) == Layout("ultralytics", False, 80)


def test_layout_override():
    assert detect_layout((1, 8400, 85), (640, 640), default_names(80), True, "yolox").name == "yolox"
    assert detect_layout((1, 8400, 85), (640, 640), default_names(80), False, "ultralytics").name == "yolov5"
    with pytest.raises(DetectorError, match="N = 3549"):
        detect_layout((1, 8400, 85), (416, 416), None, False, "yolox")
    with pytest.raises(DetectorError, match="unknown layout"):
        detect_layout((1, 3549, 85), (416, 416), None, False, "yolov9")


@pytest.mark.parametrize("shape", [(1, 7), (1, 3000, 85), (2, 3549, 85), (1, 3, 2)])
def test_bad_shape_fits_no_layout_and_says_what_was_expected(shape):
    with pytest.raises(DetectorError) as caught:
        detect_layout(shape, (416, 416), None, False)
    message = str(caught.value)
    assert f"output shape {list(shape)} fits no known layout" in message
    assert "N = 3549 for 416×416" in message and "1×(4+nc)×N" in message


def test_metadata_class_count_must_match_the_shape():
    with pytest.raises(DetectorError, match="names 2 classes"):
        detect_layout((1, 84, 8400), (640, 640), {0: "Normal", 1: "Fall"}, True)


# --------------------------------------------------------------------------- backends


def test_ultralytics_backend_without_the_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # makes `import ultralytics` fail
    with pytest.raises(DetectorError, match=r"pip install '\.\[ultralytics\]'"):
        create_detector(DetectorSettings(model=tmp_path / "model.pt", backend="ultralytics"))
