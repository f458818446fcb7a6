"""Gatherings: people linked within a radius on the ground, each group keeping its identity.

Clusters are single-linkage: two people belong to the same group when a chain of neighbours no
further apart than `radius_m` connects them. A group's identity follows its members: each frame's
clusters are matched to the remembered groups by the number of shared track ids, so a gathering
stays one event while people join and leave; when it splits, the larger share keeps the
identity and the rest is a new gathering; when two merge, one identity survives and the other
ends. Two groups in one zone are two instances, hence two events.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from gateway.analytics.matching import greedy_match
from gateway.analytics.rules.scene import Observation, Scene
from gateway.config.models import GatheringRule


def single_linkage_labels(distances: np.ndarray, radius: float) -> np.ndarray:
    """Component label per point of the graph 'distance <= radius' (the lowest member index).

    Min-label propagation with pointer jumping: vectorised over all pairs, converging in a few
    iterations (logarithmic in the chain length), no graph library needed.
    """
    n = distances.shape[0]
    adjacent = distances <= radius
    np.fill_diagonal(adjacent, True)
    labels = np.arange(n)
    while True:
        new = np.where(adjacent, labels[None, :], n).min(axis=1)
        new = new[new]
        if np.array_equal(new, labels):
            return labels
        labels = new


def clusters(distances: np.ndarray, radius: float, min_size: int) -> list[np.ndarray]:
    """Index arrays of the single-linkage clusters with at least `min_size` members.

    People with no neighbour within the radius (most passers-by) are set aside first, so the
    quadratic label propagation runs on the few who are close to someone.
    """
    if distances.shape[0] < min_size:
        return []
    linked = np.flatnonzero(np.count_nonzero(distances <= radius, axis=1) > 1)
    if len(linked) < min_size:
        return []
    labels = single_linkage_labels(distances[np.ix_(linked, linked)], radius)
    sizes = np.bincount(labels, minlength=len(linked))
    return [linked[labels == label] for label in np.flatnonzero(sizes >= min_size)]


class GatheringCondition:
    """Finds the groups of at least `min_people` in the zone and names them consistently."""

    def __init__(self, rule: GatheringRule):
        self.zone = rule.zone
        self.radius_m = rule.radius_m
        self.min_people = rule.min_people
        self._members: dict[int, set[int]] = {}
        self._next_key = 1

    def observe(self, scene: Scene) -> list[Observation]:
        rows = scene.present_in(self.zone)
        groups: list[np.ndarray] = []
        if len(rows) >= self.min_people:
            distances = scene.distances_m(rows)
            groups = [rows[c] for c in clusters(distances, self.radius_m, self.min_people)]
        ids = scene.people.ids
        keys = self._identify([set(ids[group].tolist()) for group in groups])
        return [Observation(key, True, len(group), group) for key, group in zip(keys, groups, strict=True)]

    def _identify(self, groups: list[set[int]]) -> list[int]:
        """Key per group: the remembered group sharing most members, else a new key."""
        known = list(self._members)
        shared = np.array(
            [[len(group & self._members[key]) for key in known] for group in groups], dtype=float
        ).reshape(len(groups), len(known))
        matched = {int(g): known[k] for g, k in zip(*greedy_match(shared, 1.0), strict=True)}
        keys: list[int] = []
        for g, group in enumerate(groups):
            key = matched.get(g)
            if key is None:
                key = self._next_key
                self._next_key += 1
            self._members[key] = group
            keys.append(key)
        return keys

    def forget(self, key: Hashable) -> None:
        if isinstance(key, int):  # this condition's keys; any other key was never one of its groups
            self._members.pop(key, None)
