"""Counting the crowds a detector cannot see: a per-camera regression from low-level features.

For fixed cameras over dense crowds (occlusion, small far heads) a person detector counts a
fraction of the people. Following the counting literature (Chen, Loy, Gong and Xiang, "Feature
Mining for Localised Crowd Counting", BMVC 2012), a model per camera reads perspective-weighted
foreground, edge and texture change per grid cell, plus the detector's own boxes, and is fitted
on a handful of annotated frames. Pure numpy/OpenCV, no file or network I/O:

    background.py   the empty scene: slow, selective, never learns a standing crowd
    perspective.py  how tall a person is at each row (calibration, detector boxes, or a ramp)
    features.py     the working picture, the cell grid and the per-cell raw features
    regression.py   non-negative ridge, k-fold splits, shrunk regional factors
    model.py        a fitted model and its (versioned) dict format
    training.py     fitting from annotated frames, with nested cross-validation
    counter.py      the per-camera counter: frame + boxes -> count map (total, zones, density)
    switch.py       which count the rules use (detector, model, auto)
"""

from gateway.analytics.counting.background import BackgroundSettings
from gateway.analytics.counting.counter import CountingFailed, CountMap, CrowdCounter
from gateway.analytics.counting.model import CountingModel, ModelFormatError
from gateway.analytics.counting.perspective import Perspective
from gateway.analytics.counting.switch import CountSwitch
from gateway.analytics.counting.training import AnnotatedFrame, CrossValidation, FitResult, TrainingError, fit_model

__all__ = [
    "AnnotatedFrame", "BackgroundSettings", "CountMap", "CountSwitch", "CountingFailed", "CountingModel",
    "CrossValidation", "CrowdCounter", "FitResult", "ModelFormatError", "Perspective", "TrainingError", "fit_model",
]
