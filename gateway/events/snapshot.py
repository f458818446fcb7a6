"""Evidence pictures: the triggering frame, annotated, as a size-bounded JPEG.

A duty officer decides from this picture, so it shows the zone, every person with their track
id, the event's members in red (and the hull of a gathering), and the count and local time
burnt in. Private areas are filled again here (gateway.privacy), whatever frame the caller passes,
so a mask can never leak through a snapshot. Text is ASCII (OpenCV's Hershey fonts have no Chinese glyphs);
the Chinese title travels in the payload's title_zh.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import cv2
import numpy as np

from gateway.events.timestamps import iso
from gateway.privacy import fill_masks

MAX_WIDTH = 1280
MAX_BYTES = 200_000
QUALITIES = (85, 70, 55, 40)
ZONE_COLOUR = (0, 215, 255)
PERSON_COLOUR = (80, 200, 80)
MEMBER_COLOUR = (40, 40, 230)
HEAT_OPACITY = 0.5
HEAT_FULL = 0.6
"""Crowding (share of the picture covered by people) drawn in the hottest colour."""
HEAT_VISIBLE = 0.05
"""Below this crowding nothing is tinted: empty floor stays as it is."""


@dataclass(frozen=True)
class Snapshot:
    jpeg: bytes
    width: int
    height: int
    taken_at: datetime

    def to_payload(self) -> dict[str, Any]:
        return {
            "mime": "image/jpeg",
            "encoding": "base64",
            "data": base64.b64encode(self.jpeg).decode("ascii"),
            "width": self.width,
            "height": self.height,
            "taken_at": iso(self.taken_at),
        }


@dataclass(frozen=True)
class Evidence:
    """What to draw on the frame (all coordinates in frame pixels).

    highlight: bool per box, the event's members. zones: outlines to draw (the event's zone,
    or every zone for a live view). hull: outline the members as one group.
    caption: ASCII lines burnt in at the top left.
    """

    boxes: np.ndarray
    track_ids: np.ndarray
    highlight: np.ndarray
    zones: tuple[np.ndarray, ...] = ()
    masks: list[np.ndarray] = field(default_factory=list)
    hull: bool = False
    caption: tuple[str, ...] = ()
    heat: np.ndarray | None = None
    heat_region: np.ndarray | None = None


def render(frame: np.ndarray, evidence: Evidence) -> np.ndarray:
    """An annotated copy of `frame`."""
    image = frame.copy()
    if evidence.heat is not None:
        _tint_heat(image, evidence.heat, evidence.heat_region)
    fill_masks(image, evidence.masks)
    thickness = max(1, round(image.shape[1] / 640))
    if evidence.zones:
        outlines = [np.round(zone).astype(np.int32) for zone in evidence.zones]
        cv2.polylines(image, outlines, True, ZONE_COLOUR, thickness)
    # One track id and one highlight flag per box (Evidence's parallel arrays).
    for box, track_id, member in zip(evidence.boxes, evidence.track_ids, evidence.highlight, strict=True):
        colour = MEMBER_COLOUR if member else PERSON_COLOUR
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness)
        _text(image, str(int(track_id)), (x1, max(y1 - 3, 10)), colour, 0.4 * thickness, thickness)
    if evidence.hull and evidence.highlight.any():
        corners = evidence.boxes[evidence.highlight][:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 2)
        hull = cv2.convexHull(np.round(corners).astype(np.int32))
        cv2.polylines(image, [hull], True, MEMBER_COLOUR, thickness + 1)
    _caption(image, evidence.caption, thickness)
    return image


def _tint_heat(image: np.ndarray, heat: np.ndarray, region: np.ndarray | None) -> None:
    """Blend a blue-to-red crowding colour over the crowded parts of `region`, in place."""
    level = np.clip(heat / HEAT_FULL, 0.0, 1.0)
    inside = level > HEAT_VISIBLE
    if region is not None:
        zone = np.zeros(image.shape[:2], np.uint8)
        cv2.fillPoly(zone, [np.round(region).astype(np.int32)], 1)
        inside &= zone > 0
    colours = cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_JET)
    blended = cv2.addWeighted(image, 1.0 - HEAT_OPACITY, colours, HEAT_OPACITY, 0.0)
    image[inside] = blended[inside]


def _text(image, text, origin, colour, scale, thickness) -> None:
    ascii_text = text.encode("ascii", "replace").decode("ascii")
    cv2.putText(image, ascii_text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


def _caption(image: np.ndarray, lines: tuple[str, ...], thickness: int) -> None:
    """White text on a dark band, readable over any scene."""
    scale = 0.6 * thickness
    line_height = int(28 * scale) + 6
    if not lines:
        return
    band_width = max(cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0] for line in lines)
    cv2.rectangle(image, (0, 0), (band_width + 12, line_height * len(lines) + 6), (0, 0, 0), -1)
    for i, line in enumerate(lines):
        _text(image, line, (6, line_height * (i + 1)), (255, 255, 255), scale, thickness)


def encode_bounded(image: np.ndarray, max_width: int = MAX_WIDTH, max_bytes: int = MAX_BYTES) -> tuple[bytes, int, int]:
    """JPEG no wider than max_width and no larger than max_bytes: lower quality, then downscale."""
    if image.shape[1] > max_width:
        image = _resize(image, max_width / image.shape[1])
    while True:
        for quality in QUALITIES:
            ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise ValueError("JPEG encoding failed")
            if buffer.size <= max_bytes or image.shape[1] <= 64:
                return buffer.tobytes(), image.shape[1], image.shape[0]
        image = _resize(image, 0.75)


def _resize(image: np.ndarray, factor: float) -> np.ndarray:
    size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def take_snapshot(frame: np.ndarray, evidence: Evidence, taken_at: datetime) -> Snapshot:
    jpeg, width, height = encode_bounded(render(frame, evidence))
    return Snapshot(jpeg, width, height, taken_at)
