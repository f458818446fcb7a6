"""Evidence pictures on disk: one folder, two files per event at most.

* `<event_id>.jpg` — the start picture (the first picture the event carried);
* `<event_id>.peak.jpg` — the latest picture sent when the peak rose (replaced each time).

File names are built only from validated event ids (lowercase uuids), never from raw input, so
no request can reach a file outside the folder. Writes go through a temporary file and a rename:
a crash leaves the old picture or none, never half a JPEG. Which pictures to keep (the size cap,
retention, a full disk) is the history's decision (history.py keeps the sizes in its rows).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

from gateway.delivery.storage import ensure_room
from gateway.events.lifecycle import is_event_id

log = logging.getLogger("gateway.delivery.history")

PictureKind = Literal["start", "peak"]
SnapshotKind = Literal["start", "peak", "latest"]


class PictureFiles:
    def __init__(self, folder: Path) -> None:
        """Raises OSError when the folder cannot be made (the history says what that means)."""
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, event_id: str, kind: PictureKind) -> Path:
        if not is_event_id(event_id):  # the only way a name reaches the file system
            raise ValueError(f"not an event id: {event_id!r}")
        return self.folder / (f"{event_id}.jpg" if kind == "start" else f"{event_id}.peak.jpg")

    def write(self, event_id: str, kind: PictureKind, jpeg: bytes) -> int:
        """Store a picture; returns its size. Raises OSError (a full disk, or one the picture
        would take under the gateway's floor of free space), leaving no temp file."""
        path = self.path(event_id, kind)
        temporary = path.with_name(path.name + ".tmp")
        ensure_room(self.folder, len(jpeg))
        try:
            with open(temporary, "wb") as handle:
                handle.write(jpeg)
            os.replace(temporary, path)
        except OSError:
            try:
                temporary.unlink(missing_ok=True)
            except OSError:
                pass
            raise
        return len(jpeg)

    def read(self, event_id: str, which: SnapshotKind) -> bytes | None:
        """The start picture, the latest peak picture, or the latest of the two; None if there is none."""
        if not is_event_id(event_id) or which not in ("start", "peak", "latest"):
            return None
        kinds: tuple[PictureKind, ...] = ("peak", "start") if which == "latest" else (which,)
        for kind in kinds:
            try:
                return self.path(event_id, kind).read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("cannot read the %s picture of event %s: %s", kind, event_id, exc)
        return None

    def delete(self, event_id: str, kind: PictureKind) -> bool:
        """Remove one picture (gone already counts as removed); False when the disk refused."""
        try:
            self.path(event_id, kind).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot delete the %s picture of event %s: %s", kind, event_id, exc)
            return False
        return True

    def remove_orphans(self, wanted: Callable[[str, PictureKind], bool]) -> int:
        """Delete files no event wants (a crash between writing a file and recording its row)."""
        removed = 0
        for path in self._files():
            event_id, _, suffix = path.name.partition(".")
            kind: PictureKind | None = "start" if suffix == "jpg" else "peak" if suffix == "peak.jpg" else None
            if kind is None or not wanted(event_id, kind):
                try:
                    path.unlink()
                    removed += 1
                except OSError:
                    pass
        return removed

    def _files(self) -> Iterator[Path]:
        try:
            yield from (path for path in self.folder.iterdir() if path.is_file())
        except OSError:
            return
