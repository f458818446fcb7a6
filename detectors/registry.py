"""Detector backends register themselves: a new backend is one file in this package.

A backend module defines a class that takes `DetectorSettings` and implements `Detector`, and
registers it under the name the YAML's `detector.backend` uses:

    @backend("onnxruntime")
    class OnnxDetector: ...

`create_detector` finds the backend by that name; `backend_names` is what `gateway check`
accepts. The package's modules are imported once, when a name is first looked up (Frigate's
detector plugins work the same way), so a backend needs no line anywhere else. A backend with a
heavy optional dependency imports it inside its constructor, never at module level: listing the
backends must stay cheap and must work without the optional extras installed.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TypeVar

from detectors.base import Detector, DetectorError, DetectorSettings

BackendFactory = Callable[[DetectorSettings], Detector]
F = TypeVar("F", bound=BackendFactory)
_BACKENDS: dict[str, BackendFactory] = {}
_SCANNED = False


def backend(name: str) -> Callable[[F], F]:
    """Register a backend class (or factory) under `name`."""

    def register(factory: F) -> F:
        if name in _BACKENDS and _BACKENDS[name] is not factory:
            raise ValueError(f"two detector backends are named {name!r}")
        _BACKENDS[name] = factory
        return factory

    return register


def _scan() -> None:
    """Import every module of the `detectors` package once, so their backends register."""
    global _SCANNED
    if _SCANNED:
        return
    import detectors

    for module in pkgutil.iter_modules(detectors.__path__):
        importlib.import_module(f"detectors.{module.name}")
    _SCANNED = True


def backend_names() -> tuple[str, ...]:
    _scan()
    return tuple(sorted(_BACKENDS))


def create_detector(settings: DetectorSettings) -> Detector:
    """Load and warm up the backend named in `settings`."""
    _scan()
    factory = _BACKENDS.get(settings.backend)
    if factory is None:
        raise DetectorError(f"unknown detector backend {settings.backend!r}: expected one of "
                            f"{', '.join(repr(name) for name in backend_names())}")
    return factory(settings)
