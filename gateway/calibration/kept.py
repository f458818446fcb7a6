"""A camera's counting background kept across restarts: `<data_dir>/counting/<camera id>.background.npz`.

A gateway restarts after every update, power cut and service reload, and often while a crowd
is in view. Learning the empty scene again from that crowd takes minutes and learns the people
who stand still as floor; the background the camera had a moment ago does not. So a counting
camera writes its background (and each pixel's noise) every `SAVE_EVERY_S` and when it stops,
and starts from it when it comes back, if the file is:

- for this camera, this frame size (the working picture's size) and these background settings;
- at most `MAX_AGE_S` old (lighting moves on over a day; an older one is not trusted);
- readable: a corrupt file is ignored.

Anything else is ignored with one log line saying which camera, which file and why, and the
camera learns its scene afresh (from the empty scene of its counting model when it has one).
Even a file that is used is checked against the first minutes of frames (the background's
`StartCheck`) and replaced if the camera no longer sees that scene (it was turned, the scene was
rebuilt).
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway.analytics.counting import BackgroundSettings
from gateway.analytics.counting.background import EmptyScene
from gateway.calibration.files import write_atomically
from gateway.logs import human_duration

SAVE_EVERY_S = 300.0
MAX_AGE_S = 6 * 3600.0
FORMAT = "gw.counting-background/1"


@dataclass(frozen=True)
class KeptBackground:
    """A background as kept on disk (working-size float32 pictures)."""

    camera_id: str
    frame_size: tuple[int, int]
    settings: BackgroundSettings
    saved_at: float
    """Unix time it was written."""
    scene: EmptyScene


def kept_path(data_dir: Path, camera_id: str) -> Path:
    return Path(data_dir) / "counting" / f"{camera_id}.background.npz"


def save_kept(path: Path, kept: KeptBackground) -> None:
    """Write `kept` atomically (a crash leaves the previous file)."""
    packed = io.BytesIO()
    np.savez_compressed(
        packed, format=np.array(FORMAT), camera_id=np.array(kept.camera_id),
        frame_size=np.array(kept.frame_size, np.int64), settings=np.array(_settings_text(kept.settings)),
        saved_at=np.array(kept.saved_at, np.float64), background=kept.scene.background.astype(np.float32),
        noise=kept.scene.noise.astype(np.float32))
    write_atomically(path, packed.getvalue())


def load_kept(path: Path, camera_id: str, frame_size: tuple[int, int], settings: BackgroundSettings,
              working: tuple[int, int], now: float | None = None,
              max_age_s: float = MAX_AGE_S) -> tuple[KeptBackground | None, str]:
    """The kept background if it may be used, and why (or why not), for the log."""
    if not path.exists():
        return None, f"no kept background ({path})"
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["format"]) != FORMAT:
                return None, f"{path} is not a kept counting background (format {str(data['format'])!r}); ignored"
            kept = KeptBackground(str(data["camera_id"]), (int(data["frame_size"][0]), int(data["frame_size"][1])),
                                  _settings_of(str(data["settings"])), float(data["saved_at"]),
                                  EmptyScene(data["background"].astype(np.float32), data["noise"].astype(np.float32)))
    except (OSError, ValueError, KeyError, IndexError, TypeError, zipfile.BadZipFile) as error:
        return None, f"{path} cannot be read ({error}); ignored"
    age = (time.time() if now is None else now) - kept.saved_at
    shape = (working[1], working[0])
    if kept.camera_id != camera_id:
        return None, f"{path} was kept by camera {kept.camera_id!r}; ignored"
    if kept.frame_size != tuple(frame_size) or kept.scene.background.shape != shape or kept.scene.noise.shape != shape:
        return None, (f"{path} was kept for {kept.frame_size[0]}x{kept.frame_size[1]} frames, the camera now sends "
                      f"{frame_size[0]}x{frame_size[1]}; ignored")
    if kept.settings != settings:
        return None, f"{path} was learnt with other background settings (a new model); ignored"
    if age > max_age_s:
        return None, f"{path} is {human_duration(age)} old (at most {human_duration(max_age_s)} is trusted); ignored"
    if age < -60:
        return None, f"{path} was saved {human_duration(-age)} in the future (the clock moved back?); ignored"
    return kept, f"{path}, kept {human_duration(max(age, 0.0))} ago"


def _settings_text(settings: BackgroundSettings) -> str:
    return json.dumps(settings.to_dict(), sort_keys=True)


def _settings_of(text: str) -> BackgroundSettings:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the background settings are not a JSON object")
    return BackgroundSettings.from_dict(data)
