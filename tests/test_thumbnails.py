"""The alert list's thumbnails (`GET /api/events/{id}/snapshot.jpg?size=thumb`): small copies of
the real evidence pictures (real frames, the real detector's people), made once and cached, over
real HTTP; and the picture helpers on their own.
"""

from __future__ import annotations

import cv2
import httpx
import numpy as np
import pytest

from gateway.api.thumbnails import THUMB_MAX_BYTES, THUMB_WIDTH, ThumbnailCache, jpeg_width, make_thumbnail
from waiting import PATIENCE_S
from web_support import TOKEN, frames, serve

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("thumbs")) as served:
        live, _ = served.alerts.start("gate", "gathering", 120, ago_s=300)
        served.alerts.update(live, 144)
        served.alerts.start("market", "crowd", 72, severity=2, ago_s=60)
        yield served


@pytest.fixture
def client(site):
    with httpx.Client(base_url=site.url, headers=AUTH, timeout=PATIENCE_S) as c:
        yield c


def decode(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean grey-level difference of two pictures seen at 80x60 (JPEG detail aside)."""
    a, b = (cv2.resize(x, (80, 60), interpolation=cv2.INTER_AREA).astype(np.float32) for x in (a, b))
    return float(np.abs(a - b).mean())


def test_a_thumbnail_is_small_keeps_the_aspect_and_shows_the_same_picture(client, site):
    event_id = client.get("/api/events", params={"type": "gathering"}).json()["items"][0]["event_id"]
    full = client.get(f"/api/events/{event_id}/snapshot.jpg")
    thumb = client.get(f"/api/events/{event_id}/snapshot.jpg", params={"size": "thumb"})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert "max-age" in thumb.headers["cache-control"]
    big, small = decode(full.content), decode(thumb.content)
    assert big.shape[:2] == (576, 768) and small.shape[:2] == (240, THUMB_WIDTH)
    assert len(thumb.content) <= THUMB_MAX_BYTES and len(full.content) > 4 * len(thumb.content)
    other = decode(client.get(f"/api/events/{event_id}/snapshot.jpg", params={"which": "peak"}).content)
    same, different = difference(big, small), difference(other, small)
    assert same < 3.5 and different > 2 * same  # the same picture, only smaller (2.3 vs 7.0 measured)
    print(f"\nfull {len(full.content)} B, thumbnail {len(thumb.content)} B")

    assert client.get(f"/api/events/{event_id}/snapshot.jpg", params={"size": "full"}).content == full.content
    peak = client.get(f"/api/events/{event_id}/snapshot.jpg", params={"which": "peak", "size": "thumb"})
    assert peak.status_code == 200 and decode(peak.content).shape[1] == THUMB_WIDTH


def test_thumbnails_are_made_once_then_served_from_the_cache(client, site):
    event_id = client.get("/api/events", params={"type": "crowd"}).json()["items"][0]["event_id"]
    cache = site.app.state.context.thumbnails
    first = client.get(f"/api/events/{event_id}/snapshot.jpg", params={"size": "thumb"}).content
    made = cache.made
    assert client.get(f"/api/events/{event_id}/snapshot.jpg", params={"size": "thumb"}).content == first
    assert cache.made == made


def test_bad_size_and_unknown_parameters_are_refused(client):
    event_id = client.get("/api/events").json()["items"][0]["event_id"]
    assert client.get(f"/api/events/{event_id}/snapshot.jpg", params={"size": "huge"}).status_code == 422
    assert client.get(f"/api/events/{event_id}/snapshot.jpg", params={"width": "10"}).status_code == 422
    spec = client.get("/openapi.json").json()["paths"]["/api/events/{event_id}/snapshot.jpg"]["get"]
    assert "size=thumb" in spec["description"]
    assert {p["name"] for p in spec["parameters"]} >= {"which", "size"}


# --------------------------------------------------------------------------- the helpers


def real_jpeg(width: int) -> bytes:
    frame = frames()[0]
    frame = cv2.resize(frame, (width, width * 3 // 4), interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


@pytest.mark.parametrize("width", [200, 640, 768, 1280])
def test_make_thumbnail_bounds_width_and_bytes(width):
    jpeg = real_jpeg(width)
    assert jpeg_width(jpeg) == width
    thumb = make_thumbnail(jpeg)
    assert thumb is not None and len(thumb) <= THUMB_MAX_BYTES
    assert decode(thumb).shape[1] == min(width, THUMB_WIDTH)


def test_a_small_picture_is_its_own_thumbnail_and_garbage_is_refused():
    small = real_jpeg(160)
    assert make_thumbnail(small) is small
    assert make_thumbnail(b"not a jpeg at all") is None and jpeg_width(b"\xff\xd8\xff") is None
    assert ThumbnailCache().get("e", "start", b"\xff\xd8 broken") is None


def test_the_cache_follows_a_replaced_picture_and_forgets_the_oldest():
    cache = ThumbnailCache(kept=2)
    first, second = real_jpeg(640), real_jpeg(768)
    a = cache.get("event-a", "peak", first)
    assert cache.get("event-a", "peak", first) is a and cache.made == 1
    replaced = cache.get("event-a", "peak", second)  # the peak picture was replaced: a new thumbnail
    assert replaced is not a and cache.made == 2
    cache.get("event-b", "start", first)
    cache.get("event-c", "start", first)  # over `kept`: event-a's goes
    cache.get("event-a", "peak", second)
    assert cache.made == 5
