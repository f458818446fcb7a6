"""Small copies of the evidence pictures for the alert list (`?size=thumb`).

A fresh list shows about fifty alerts at 184x138 on screen; sent at their kept size (768x576,
about 100 kB each) the list weighs megabytes, which a duty officer on a phone or a township's
thin link waits for. A thumbnail is at most `THUMB_WIDTH` pixels wide and `THUMB_MAX_BYTES`,
made from the kept JPEG (decoded at a reduced scale, so it costs a fraction of a full decode)
the first time it is asked for, and kept in a small LRU keyed by the event, which picture,
and a digest of the source bytes: a peak picture that was replaced gets a new thumbnail, an
unchanged one is never encoded twice.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import cv2
import numpy as np

from gateway.events.snapshot import encode_bounded

THUMB_WIDTH = 320
"""Twice the list's on-screen width on a laptop (sharp on a high-density phone screen too)."""
THUMB_MAX_BYTES = 12_000
THUMBS_KEPT = 256
"""About five pages of the list (4 MB at most)."""
_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def jpeg_width(jpeg: bytes) -> int | None:
    """The width in the JPEG's frame header (SOFn), None when the bytes are not a readable JPEG."""
    at = 2
    while at + 9 <= len(jpeg) and jpeg[at] == 0xFF:
        marker = jpeg[at + 1]
        length = int.from_bytes(jpeg[at + 2:at + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(jpeg[at + 7:at + 9], "big")
        at += 2 + length
    return None


def make_thumbnail(jpeg: bytes, width: int = THUMB_WIDTH, max_bytes: int = THUMB_MAX_BYTES) -> bytes | None:
    """A JPEG at most `width` wide and `max_bytes` large (the picture itself when it already is);
    None when the bytes do not decode as a picture."""
    full_width = jpeg_width(jpeg)
    if full_width is not None and full_width <= width and len(jpeg) <= max_bytes:
        return jpeg
    flag = next((f for scale, f in _REDUCED if full_width and full_width // scale >= width), cv2.IMREAD_COLOR)
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), flag)
    if image is None:
        return None
    small, _, _ = encode_bounded(image, max_width=width, max_bytes=max_bytes)
    return small


class ThumbnailCache:
    """Thumbnails made once per source picture (see the module docstring); thread-safe (the
    API answers picture requests on its thread pool)."""

    def __init__(self, kept: int = THUMBS_KEPT) -> None:
        self.kept = kept
        self.made = 0
        """Thumbnails encoded so far (the rest were served from the cache)."""
        self._lock = threading.Lock()
        self._thumbs: OrderedDict[tuple[str, str], tuple[bytes, bytes]] = OrderedDict()

    def get(self, event_id: str, which: str, jpeg: bytes) -> bytes | None:
        """The thumbnail of `jpeg`, the event's `which` picture; None when it does not decode."""
        key, digest = (event_id, which), hashlib.blake2b(jpeg, digest_size=16).digest()
        with self._lock:
            hit = self._thumbs.get(key)
            if hit is not None and hit[0] == digest:
                self._thumbs.move_to_end(key)
                return hit[1]
        thumb = make_thumbnail(jpeg)
        if thumb is None:
            return None
        with self._lock:
            self.made += 1
            self._thumbs[key] = (digest, thumb)
            self._thumbs.move_to_end(key)
            while len(self._thumbs) > self.kept:
                self._thumbs.popitem(last=False)
        return thumb
