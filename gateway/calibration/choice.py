"""Which counting model a camera counts with, in which mode, and where it comes from.

Two places can hold a camera's model: a file the YAML names (`counting.model`, from `gateway
calibrate count`), and the file the page's 标注人数 tool writes when an installer fits one,
`<data_dir>/counting/<camera id>.json`. The rules, in order:

1. `counting.mode: detector` written in the YAML: the detector, whatever files exist (the
   installer said so; a page-fitted model is left unused, and `gateway check` says it is there).
2. `counting.model` in the YAML: that file ("yaml"), in the YAML's mode, `auto` when the YAML
   names a model without a mode.
3. Otherwise the page's file when it exists ("page"): a model fitted on the page keeps counting
   after a restart without anyone editing the YAML, in the YAML's mode or `auto`.
4. Otherwise the detector (a `model`/`auto` mode without any model is logged as waiting for one).

A camera that patrols presets counts with the detector (a model needs a fixed view).
`gateway check` prints `describe(choice)` per camera; the counting API reports `origin`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gateway.analytics.counting import CountingModel
from gateway.calibration.files import ModelFileError, load_model
from gateway.config.counting import default_model_path
from gateway.config.models import Camera, GatewayConfig

log = logging.getLogger(__name__)

FITTED_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")

Origin = Literal["yaml", "page"]


@dataclass(frozen=True)
class ModelChoice:
    """mode: how the camera counts (`detector` when there is no model to count with);
    path: the model file (None: the detector); origin: who made it; reason: for `detector`,
    why (for the log and `gateway check`)."""

    camera_id: str
    mode: str
    path: Path | None = None
    origin: Origin | None = None
    reason: str = ""


def model_choice(camera: Camera, data_dir: Path) -> ModelChoice:
    """The rules of the module docstring, from the configuration and the files present."""
    counting = camera.counting
    mode_written = "mode" in counting.model_fields_set
    page_file = default_model_path(data_dir, camera.id)
    if mode_written and counting.mode == "detector":
        unused = f"; the model fitted on the page ({page_file}) is not used" if page_file.exists() else ""
        return ModelChoice(camera.id, "detector", reason=f"counting.mode is detector in the configuration{unused}")
    if camera.patrol:
        return ModelChoice(camera.id, "detector", reason=f"counting.mode {counting.mode} ignored: a counting model "
                                                         f"needs a fixed view and this camera patrols presets")
    if counting.model is not None:
        return ModelChoice(camera.id, counting.mode if mode_written else "auto", counting.model, "yaml")
    if page_file.exists():
        return ModelChoice(camera.id, counting.mode if mode_written else "auto", page_file, "page")
    reason = "no counting model" if not mode_written else \
        f"counting.mode is {counting.mode} but no model is fitted yet ({page_file})"
    return ModelChoice(camera.id, "detector", reason=reason)


def camera_model(camera: Camera, data_dir: Path,
                 frame_size: tuple[int, int]) -> tuple[CountingModel | None, ModelChoice]:
    """The model `camera` counts with at this frame size (None: the detector, or a model that
    cannot be used: a warning says which camera, which file, why, and what happens now)."""
    choice = model_choice(camera, data_dir)
    if choice.path is None:
        if "mode" in camera.counting.model_fields_set and camera.counting.mode != "detector":
            waiting = "" if camera.patrol else " until one is fitted (gateway calibrate count, or 标注人数 in the page)"
            log.warning("camera %s: %s; counting with the detector%s", camera.id, choice.reason, waiting)
        return None, choice
    try:
        model = load_model(choice.path, camera.id, frame_size)
    except ModelFileError as error:
        log.warning("camera %s: counting model unusable: %s; counting with the detector instead", camera.id, error)
        return None, ModelChoice(camera.id, "detector", reason=f"the model is unusable: {error}")
    except Exception as error:  # noqa: BLE001 - whatever a file holds, the camera must go on counting
        log.warning("camera %s: counting model unusable: %s: cannot be read (%s); counting with the detector "
                    "instead", camera.id, choice.path, type(error).__name__)
        return None, ModelChoice(camera.id, "detector", reason=f"the model cannot be read ({type(error).__name__})")
    log.info("camera %s: counting in %s mode with %s (%s; fitted on %s frames, cross-validated error %s people)",
             camera.id, choice.mode, choice.path, describe_origin(choice.origin, model), *_training(model))
    return model, choice


def _training(model: CountingModel) -> tuple[str, str]:
    """(frames, cross-validated MAE) of a model's training record, as numbers or '?': a model file
    may come from anywhere, and only numbers go into a log line."""
    validation = model.training.get("cross_validation")
    return _number(model.training.get("frames")), _number(validation.get("mae") if isinstance(validation, dict)
                                                          else None)


def _number(value: object) -> str:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else "?"


def describe_origin(origin: Origin | None, model: CountingModel | None) -> str:
    """'fitted on the page 2026-05-01 10:00', 'named in the configuration', ..."""
    if origin == "yaml":
        return "named in the configuration"
    if origin == "page":
        fitted = str((model.training if model else {}).get("fitted_at") or "")[:16]
        shown = fitted.replace("T", " ") if FITTED_AT.fullmatch(fitted) else ""  # a file's text, shown only if a time
        return f"fitted on the page {shown}".rstrip()
    return "no model"


def describe(camera: Camera, data_dir: Path) -> str:
    """One line of `gateway check` per camera: how it will count, with which model, from where."""
    choice = model_choice(camera, data_dir)
    if choice.path is None:
        return f"camera {camera.id}: counts with the detector ({choice.reason})"
    try:
        model = load_model(choice.path, camera.id, camera.resolution)
    except ModelFileError as error:
        return f"camera {camera.id}: counts with the detector: its model is unusable ({error})"
    except Exception as error:  # noqa: BLE001 - gateway check reports, it never crashes on a file
        return f"camera {camera.id}: counts with the detector: its model cannot be read ({type(error).__name__})"
    origin = describe_origin(choice.origin, model)
    frames, mae = _training(model)
    return (f"camera {camera.id}: counts in {choice.mode} mode with {choice.path} ({origin}; "
            f"{frames} frames, cross-validated MAE {mae} people)")


def counting_lines(config: GatewayConfig) -> list[str]:
    """`describe` for every camera that counts with a model or has one fitted on the page."""
    data_dir = config.gateway.data_dir
    return [describe(camera, data_dir) for camera in config.cameras
            if model_choice(camera, data_dir).path is not None or "mode" in camera.counting.model_fields_set
            or default_model_path(data_dir, camera.id).exists()]
