"""Small regressions for counting models: non-negative ridge, k-fold splits, regional scales.

A counting model is fitted on a handful of annotated frames (5-30), so everything here is about
not over-fitting: weights are non-negative (more change in the picture never means fewer
people), shrunk towards zero (ridge), and regional corrections are shrunk towards 1.
"""

from __future__ import annotations

import numpy as np

MAX_SWEEPS = 5000
TOLERANCE = 1e-10


def nonnegative_ridge(features: np.ndarray, targets: np.ndarray, strength: float) -> np.ndarray:
    """Weights w >= 0 minimising |X w - y|^2 + strength * sum_j G_jj w_j^2 (G = X^T X).

    The penalty is relative to each feature's own scale, so `strength` means the same whatever
    the units of the features. Solved by coordinate descent on the normal equations (exact for
    a handful of features; a feature that is all zeros gets weight 0).
    """
    features = np.asarray(features, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    gram = features.T @ features
    correlation = features.T @ targets
    diagonal = np.diag(gram).copy()
    gram[np.diag_indices_from(gram)] = diagonal * (1.0 + strength) + 1e-12
    weights = np.zeros(len(correlation))
    for _ in range(MAX_SWEEPS):
        largest_move = 0.0
        for j in range(len(weights)):
            residual = correlation[j] - gram[j] @ weights + gram[j, j] * weights[j]
            new = max(0.0, residual / gram[j, j])
            largest_move = max(largest_move, abs(new - weights[j]))
            weights[j] = new
        if largest_move < TOLERANCE * (1.0 + np.abs(weights).max()):
            break
    return weights


def kfold(count: int, folds: int) -> list[np.ndarray]:
    """Held-out index sets of k-fold cross-validation over `count` items, interleaved (frames
    taken in time order: every fold spans the whole recording)."""
    folds = max(2, min(folds, count))
    return [np.arange(start, count, folds) for start in range(folds)]


def shrunk_scales(predicted: np.ndarray, actual: np.ndarray, strength: float,
                  bounds: tuple[float, float] = (0.25, 4.0)) -> np.ndarray:
    """Per-region factors s_r minimising sum_k (s_r P_kr - Y_kr)^2 + strength n m_r (s_r - 1)^2.

    predicted, actual: (frames, regions). m_r is the mean of P_kr^2, so `strength` is in units
    of 'frames worth of evidence that the shared weights are right here'.
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    prior = strength * len(predicted) * np.maximum((predicted**2).mean(axis=0), 1e-9)
    scales = ((predicted * actual).sum(axis=0) + prior) / ((predicted**2).sum(axis=0) + prior)
    return np.clip(scales, *bounds)
