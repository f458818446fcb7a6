"""Crowd and gathering analytics: tracking, zones, rules, and the alert messages they raise.

Pure logic over numpy arrays, driven by detections and the caller's clock; no I/O.
"""

from gateway.analytics.pipeline import CameraAnalytics, FrameResult

__all__ = ["CameraAnalytics", "FrameResult"]
