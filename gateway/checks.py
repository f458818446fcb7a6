"""`gateway check` in full: the configuration, and the files it names that only modules above
the config can read (today: the cameras' counting models). The CLI and the service's reload
both check through here, so `check` refuses exactly what `run` would.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from gateway.calibration.files import model_file_problems
from gateway.config import ConfigIssue, GatewayConfig, check_config


def check_site(path: str | os.PathLike[str], env: Mapping[str, str] | None = None, *,
               counting_models: bool = True) -> tuple[GatewayConfig | None, list[ConfigIssue]]:
    """Like `check_config`, plus the counting model files (skipped by calibration, which is
    about to write them)."""
    return check_config(path, env, file_checks=(model_file_problems,) if counting_models else ())
