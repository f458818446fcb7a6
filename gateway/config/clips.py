"""`clips:` — a video clip for every alert of a camera, remuxed from what the camera sent.

    clips:
      enabled: true      # a clip for every alert of this camera (default)
      pre_s: 5           # from the last keyframe at least this long before the alert starts
      post_s: 10         # until this long after the alert ends
      max_s: 60          # never longer than this after the start

Per camera, with site defaults through `defaults: {clips: {...}}`. The clip keeps the camera's
codec (H.264/H.265, no re-encoding) and comes from the stream the gateway analyses. The folder's
size is `storage.clips_max_mb` (oldest clips deleted first).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from gateway.config.base import LocatedValueError, StrictModel


class ClipsSection(StrictModel):
    enabled: bool = Field(default=True, description="Record a clip for every alert of this camera.")
    pre_s: float = Field(default=5, ge=0, le=60, description="Seconds of video before the alert starts.")
    post_s: float = Field(default=10, ge=0, le=300, description="Seconds of video after the alert ends.")
    max_s: float = Field(default=60, gt=0, le=3600, description="The longest clip, from the alert's start.")

    @model_validator(mode="after")
    def _post_fits(self) -> ClipsSection:
        if self.post_s > self.max_s:
            raise LocatedValueError("post_s", f"post_s ({self.post_s:g}) is longer than max_s ({self.max_s:g}): "
                                              "a clip never runs past max_s after the start")
        return self
