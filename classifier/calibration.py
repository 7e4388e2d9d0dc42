"""Confidence that means what it says, and who decides: the model or a reviewer.

- Temperature scaling: one number T fitted on held-out photos at training time; the
  served probabilities are softmax(logits / T). `expected_calibration_error` measures it.
- Auto-accept thresholds per class, chosen on held-out photos so that the photos accepted
  without a human are expected to reach a target precision (AUTO_ACCEPT_PRECISION).
- An open-set score for photos of things that are none of our classes (see docs/model.md
  for the scores compared): above its threshold a photo goes to review as `unknown_item`.

All of it is stored in the version's config.json under "routing", so a version carries the
policy it was validated with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .outcomes import ReviewReason

ECE_BINS = 15


# --- Temperature --------------------------------------------------------------------


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, label_noise: float = 0.0) -> float:
    """The T minimising the negative log-likelihood of softmax(logits / T) (T > 0).

    `label_noise` is the share of held-out labels taken to be wrong, whatever the photo: the
    likelihood is that of (1 - label_noise) * softmax + label_noise / classes. Without it a few
    confidently "wrong" photos whose label is the mistake (the catalogue has some: docs/model.md)
    dominate the fit, soften every confidence and make T swing with which photos were held out.
    """
    logits = logits.detach().float().clone()  # inference-mode tensors cannot join autograd
    log_t = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")
    uniform = label_noise / max(1, logits.shape[1])

    def closure():
        optimizer.zero_grad()
        if label_noise:
            probs = (1 - label_noise) * (logits / log_t.exp()).softmax(dim=1) + uniform
            loss = -probs.gather(1, labels[:, None]).log().mean()
        else:
            loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> float:
    """|accuracy - confidence| averaged over equal-width confidence bins, weighted by size."""
    if len(labels) == 0:
        return 0.0
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            weight = in_bin.float().mean()
            ece += float(weight * (correct[in_bin].mean() - confidence[in_bin].mean()).abs())
    return ece


# --- Open-set score -----------------------------------------------------------------


def unknown_scores(logits: torch.Tensor, method: str = "energy") -> torch.Tensor:
    """Higher means less like any known class.

    energy: -logsumexp(logits); max_logit: -max(logits); msp: 1 - max softmax probability.
    """
    logits = logits.float()
    if method == "energy":
        return -torch.logsumexp(logits, dim=1)
    if method == "max_logit":
        return -logits.max(dim=1).values
    if method == "msp":
        return 1 - logits.softmax(dim=1).max(dim=1).values
    raise ValueError(f"unknown open-set score {method!r}")


def auroc(negatives: torch.Tensor, positives: torch.Tensor) -> float:
    """Probability that a positive scores above a negative (ties count half)."""
    if len(negatives) == 0 or len(positives) == 0:
        return float("nan")
    diff = positives.view(-1, 1) - negatives.view(1, -1)
    return float((diff > 0).float().mean() + 0.5 * (diff == 0).float().mean())


# --- Thresholds ---------------------------------------------------------------------


def precision_threshold(confidence: torch.Tensor, correct: torch.Tensor, target: float) -> float:
    """The lowest threshold t at which the photos with confidence >= t reach `target` precision.

    Returns 1.0 (accept nothing) when no threshold reaches it. A threshold never splits photos
    of equal confidence.
    """
    if len(confidence) == 0:
        return 1.0
    order = torch.argsort(confidence, descending=True)
    conf, hits = confidence[order], correct[order].float()
    precision = hits.cumsum(0) / torch.arange(1, len(hits) + 1)
    # Cut points are the last photo of each group of equal confidence.
    last_of_group = torch.ones(len(conf), dtype=torch.bool)
    last_of_group[:-1] = conf[1:] < conf[:-1]
    good = torch.nonzero(last_of_group & (precision >= target)).flatten()
    return float(conf[good[-1]]) if len(good) else 1.0


def expected_precision_threshold(confidence: torch.Tensor, target: float) -> float:
    """The lowest threshold t at which the photos with confidence >= t are expected to reach
    `target` precision, judged by their calibrated confidences (their mean is the expected share
    of right answers). Unlike counting errors, this does not swing on one or two photos of a
    small held-out set."""
    if len(confidence) == 0:
        return 1.0
    ordered = torch.sort(confidence.float(), descending=True).values
    expected = ordered.cumsum(0) / torch.arange(1, len(ordered) + 1)
    last_of_group = torch.ones(len(ordered), dtype=torch.bool)
    last_of_group[:-1] = ordered[1:] < ordered[:-1]
    good = torch.nonzero(last_of_group & (expected >= target)).flatten()
    return float(ordered[good[-1]]) if len(good) else 1.0


def choose_thresholds(probs: torch.Tensor, labels: torch.Tensor, classes: list[str], target: float) -> dict:
    """Per-class auto-accept thresholds on calibrated confidence.

    Each class gets the lowest threshold at which its accepted held-out photos are expected to
    reach the target precision (`expected_precision_threshold`); if every class's accepted
    photos reach it, so do all of them together. The counted precision of the accepted
    held-out photos is kept beside it, as a check of the calibration it relies on.
    """
    confidence, predicted = probs.max(dim=1)
    correct = predicted == labels
    thresholds, observed = {}, {}
    accepted = torch.zeros(len(labels), dtype=torch.bool)
    for index, name in enumerate(classes):
        mine = predicted == index
        thresholds[name] = expected_precision_threshold(confidence[mine], target)
        chosen = mine & (confidence >= thresholds[name])
        accepted |= chosen
        observed[name] = float(correct[chosen].float().mean()) if chosen.any() else None
    return {
        "per_class": thresholds,
        "observed_precision": observed,
        "accepted": float(accepted.float().mean()) if len(labels) else 0.0,
        "accepted_precision": float(correct[accepted].float().mean()) if accepted.any() else None,
    }


def known_quantile(scores: torch.Tensor, flagged: float, groups: torch.Tensor | None = None) -> float:
    """The open-set threshold that flags the given fraction of known photos.

    With `groups` (e.g. the folder each held-out photo comes from: catalogue or real photos),
    every group weighs the same, however many photos it has: the fraction flagged is then the
    mean of the groups' fractions, so a few hundred real photos beside thousands of catalogue
    ones still shape the threshold (real photos score as less familiar)."""
    if len(scores) == 0:
        return math.inf
    if groups is None or len(torch.unique(groups)) < 2:
        return float(torch.quantile(scores.float(), 1 - flagged))
    _, inverse, counts = torch.unique(groups, return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse].double()
    order = torch.argsort(scores.double(), descending=True)
    flagged_weight = torch.cumsum(weights[order], 0) / weights.sum()
    # The highest score whose photos above it weigh no more than `flagged`.
    index = int(torch.searchsorted(flagged_weight, torch.tensor(flagged, dtype=torch.float64), right=True))
    return float(scores[order[min(index, len(order) - 1)]])


# --- The policy a version is served with --------------------------------------------


@dataclass(frozen=True)
class RoutingPolicy:
    temperature: float = 1.0
    thresholds: dict | None = None  # class -> minimum calibrated confidence
    default_threshold: float = 0.8  # for classes (or versions) without one
    unknown_method: str | None = None
    unknown_threshold: float = math.inf

    @classmethod
    def from_config(cls, config: dict, default_threshold: float, runtime: str | None = None) -> RoutingPolicy:
        """The version's policy; a serving runtime with its own (fitted on its own outputs, e.g.
        the int8 network's) uses that one."""
        routing = (config.get("runtimes", {}).get(runtime) or {}).get("routing") or config.get("routing") or {}
        unknown = routing.get("unknown") or {}
        return cls(
            temperature=float(routing.get("temperature", 1.0)),
            thresholds=routing.get("thresholds"),
            default_threshold=default_threshold,
            unknown_method=unknown.get("method"),
            unknown_threshold=float(unknown.get("threshold", math.inf)),
        )

    def calibrate(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits.float() / self.temperature).softmax(dim=1)

    def unknown(self, logits: torch.Tensor) -> torch.Tensor | None:
        return unknown_scores(logits, self.unknown_method) if self.unknown_method else None

    def threshold(self, predicted_class: str) -> float:
        if self.thresholds and predicted_class in self.thresholds:
            return float(self.thresholds[predicted_class])
        return self.default_threshold

    def reason(self, predicted_class: str, confidence: float, unknown: float | None) -> ReviewReason | None:
        """Why a prediction needs a reviewer (None: it is accepted automatically)."""
        if unknown is not None and unknown > self.unknown_threshold:
            return ReviewReason.UNKNOWN_ITEM
        if confidence < self.threshold(predicted_class):
            return ReviewReason.LOW_CONFIDENCE
        return None

    def reasons(
        self, classes: list[str], probs: torch.Tensor, unknown: torch.Tensor | None
    ) -> list[ReviewReason | None]:
        """`reason` for every row of calibrated probabilities (and open-set scores)."""
        confidence, predicted = probs.max(dim=1)
        scores = unknown.tolist() if unknown is not None else [None] * len(probs)
        return [
            self.reason(classes[index], value, score)
            for index, value, score in zip(predicted.tolist(), confidence.tolist(), scores)
        ]


def routing_figures(probs: torch.Tensor, raw_probs: torch.Tensor, labels: torch.Tensor, reasons: list) -> dict:
    """Calibration and auto-accept figures of predictions whose true classes are known."""
    accepted = torch.tensor([reason is None for reason in reasons], dtype=torch.bool)
    correct = probs.argmax(dim=1) == labels
    return {
        "ece": expected_calibration_error(probs, labels),
        "ece_uncalibrated": expected_calibration_error(raw_probs, labels),
        "auto_accept_rate": float(accepted.float().mean()) if len(labels) else 0.0,
        "auto_accept_precision": float(correct[accepted].float().mean()) if accepted.any() else None,
        "review_reasons": {reason.value: reasons.count(reason) for reason in ReviewReason},
    }
