"""Drift: how far a run's photos have moved from the photos a model version was fitted on.

A version keeps a baseline with its routing (config["routing"]["baseline"]): the share of its
held-out photos predicted as each class and the histogram of their calibrated confidence. A
finished run keeps the same two figures (batches.services.finish_run_if_done) and is compared
with its version's baseline by the population stability index (PSI):

    PSI = sum over bins of (actual - expected) * ln(actual / expected)

Below 0.1 the population is stable, 0.1-0.25 it has moved, above DRIFT_ALERT_PSI it has changed
enough to look at (the usual reading of the index). Empty bins count as DRIFT_EMPTY_SHARE so that
the index stays finite. Pure Python: no torch, so the batch app can use it.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable

# Ten bins of calibrated confidence; the last one holds 1.0 too.
CONFIDENCE_EDGES = tuple(round(i / 10, 1) for i in range(11))
DRIFT_ALERT_PSI = 0.25
DRIFT_EMPTY_SHARE = 1e-4
# Below this many predictions a run's PSI says more about its size than its photos (a sample of n
# inflates the class-mix PSI by about 14/n with 15 classes): no figure.
DRIFT_MIN_PHOTOS = 100
KINDS = ("classes", "confidence")


def confidence_histogram(confidences: Iterable[float]) -> list[int]:
    """Counts of confidences per bin of CONFIDENCE_EDGES."""
    counts = [0] * (len(CONFIDENCE_EDGES) - 1)
    for confidence in confidences:
        index = bisect.bisect_right(CONFIDENCE_EDGES, confidence) - 1
        counts[min(max(index, 0), len(counts) - 1)] += 1
    return counts


def baseline(predicted_classes: Iterable[str], confidences: Iterable[float], classes: list[str]) -> dict:
    """The baseline a version stores: its held-out photos' class mix and confidence histogram."""
    mix = Counter(predicted_classes)
    histogram = confidence_histogram(confidences)
    return {
        "photos": sum(histogram),
        "classes": {name: mix.get(name, 0) for name in classes},
        "confidence": histogram,
        "confidence_edges": list(CONFIDENCE_EDGES),
    }


def psi(expected: list[float], actual: list[float]) -> float:
    """Population stability index of two histograms (counts or shares) over the same bins."""
    expected_total, actual_total = sum(expected), sum(actual)
    if not expected_total or not actual_total:
        raise ValueError("PSI needs two non-empty histograms")
    index = 0.0
    for e, a in zip(expected, actual, strict=True):
        e = max(e / expected_total, DRIFT_EMPTY_SHARE)
        a = max(a / actual_total, DRIFT_EMPTY_SHARE)
        index += (a - e) * math.log(a / e)
    return index


def run_drift(reference: dict | None, class_counts: dict[str, int], histogram: list[int]) -> dict[str, float]:
    """{"classes": PSI, "confidence": PSI} of a run against a version's baseline; {} when the
    version has no baseline or the run has fewer than DRIFT_MIN_PHOTOS predictions."""
    if not reference or not reference.get("photos") or sum(histogram) < DRIFT_MIN_PHOTOS:
        return {}
    names = sorted(set(reference["classes"]) | set(class_counts))
    return {
        "classes": round(
            psi([reference["classes"].get(n, 0) for n in names], [class_counts.get(n, 0) for n in names]), 4
        ),
        "confidence": round(psi(reference["confidence"], histogram), 4),
    }


def reading(value: float) -> str:
    """The usual reading of a PSI: stable (below 0.1), moved (to DRIFT_ALERT_PSI), drifted."""
    if value > DRIFT_ALERT_PSI:
        return "drifted"
    return "moved" if value >= 0.1 else "stable"


def drifted(drift: dict[str, float]) -> list[str]:
    """The kinds whose PSI is above DRIFT_ALERT_PSI."""
    return [kind for kind in KINDS if drift.get(kind, 0.0) > DRIFT_ALERT_PSI]


def version_baseline(config: dict) -> dict | None:
    """A version's baseline from its serving config: that of its PyTorch routing, else of a
    runtime's own (the int8 network's differs from it by a fraction of a point)."""
    found = (config.get("routing") or {}).get("baseline")
    for entry in config.get("runtimes", {}).values():
        found = found or (entry.get("routing") or {}).get("baseline")
    return found
