"""Best-first one-to-one assignment, shared by the tracker (boxes) and gatherings (member sets)."""

from __future__ import annotations

import numpy as np


def greedy_match(similarity: np.ndarray, minimum: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns paired best-first among entries >= minimum; each used at most once.

    Greedy rather than Hungarian: for the sparse, mostly unambiguous matrices here (IoU between
    people boxes, shared members between clusters) it picks the same pairs without a solver.
    Only the candidate entries are visited (about one per row), so the loop is short; ties go
    to the lower index, so results are deterministic.
    """
    rows, cols = np.nonzero(similarity >= minimum)
    order = np.argsort(-similarity[rows, cols], kind="stable")
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    pairs = []
    for r, c in zip(rows[order].tolist(), cols[order].tolist(), strict=True):
        if r not in used_rows and c not in used_cols:
            used_rows.add(r)
            used_cols.add(c)
            pairs.append((r, c))
    matched = np.array(pairs, dtype=np.intp).reshape(-1, 2)
    return matched[:, 0], matched[:, 1]
