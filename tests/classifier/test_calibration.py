"""Temperature scaling, ECE, auto-accept thresholds and the open-set score, on synthetic logits
where the right numbers are known exactly."""

import math

import pytest
import torch

from classifier import calibration
from classifier.calibration import RoutingPolicy
from classifier.outcomes import ReviewReason


def overconfident(n=20000, classes=5, true_temperature=2.0, seed=0):
    """Logits whose labels are drawn from softmax(logits / true_temperature)."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=generator) * 4
    labels = torch.multinomial((logits / true_temperature).softmax(dim=1), 1, generator=generator).squeeze(1)
    return logits, labels


def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_with():
    logits, labels = overconfident(true_temperature=2.0)
    assert calibration.fit_temperature(logits, labels) == pytest.approx(2.0, abs=0.1)
    logits, labels = overconfident(true_temperature=0.5, seed=1)
    assert calibration.fit_temperature(logits, labels) == pytest.approx(0.5, abs=0.05)


def test_a_few_wrong_labels_do_not_soften_every_confidence_when_label_noise_is_allowed_for():
    logits, labels = overconfident(true_temperature=0.5, seed=2)
    # 2% of the labels replaced by a random class, as mislabelled held-out photos would be.
    generator = torch.Generator().manual_seed(3)
    flipped = torch.rand(len(labels), generator=generator) < 0.02
    noisy = torch.where(flipped, torch.randint(0, 5, labels.shape, generator=generator), labels)
    plain = calibration.fit_temperature(logits, noisy)
    aware = calibration.fit_temperature(logits, noisy, label_noise=0.02)
    assert plain > 0.6  # pulled far up by the few confidently "wrong" photos
    assert aware == pytest.approx(0.5, abs=0.05)


def test_ece_is_the_weighted_gap_between_confidence_and_accuracy():
    # Four photos at 0.9 confidence, three right: one bin, |0.75 - 0.9| = 0.15.
    probs = torch.tensor([[0.9, 0.1]] * 4)
    labels = torch.tensor([0, 0, 0, 1])
    assert calibration.expected_calibration_error(probs, labels) == pytest.approx(0.15)
    # Add four at 0.6, all right: (4 * 0.15 + 4 * 0.4) / 8.
    probs = torch.cat([probs, torch.tensor([[0.6, 0.4]] * 4)])
    labels = torch.cat([labels, torch.tensor([0, 0, 0, 0])])
    assert calibration.expected_calibration_error(probs, labels) == pytest.approx((0.6 + 1.6) / 8)
    # Perfectly calibrated: confidence 1 and always right.
    assert calibration.expected_calibration_error(torch.eye(3), torch.arange(3)) == pytest.approx(0.0)


def test_temperature_scaling_brings_ece_of_overconfident_logits_under_two_percent():
    logits, labels = overconfident(true_temperature=2.5, seed=2)
    before = calibration.expected_calibration_error(logits.softmax(dim=1), labels)
    policy = RoutingPolicy(temperature=calibration.fit_temperature(logits, labels))
    after = calibration.expected_calibration_error(policy.calibrate(logits), labels)
    assert before > 0.05
    assert after < 0.02


def test_precision_threshold_is_the_lowest_that_reaches_the_target():
    confidence = torch.tensor([0.99, 0.98, 0.97, 0.96, 0.95, 0.90, 0.80, 0.70])
    correct = torch.tensor([True, True, True, True, False, True, True, False])
    # Precision down to each cut: 1, 1, 1, 1, 4/5, 5/6, 6/7, 6/8.
    assert calibration.precision_threshold(confidence, correct, 0.99) == pytest.approx(0.96)
    assert calibration.precision_threshold(confidence, correct, 0.85) == pytest.approx(0.80)  # 6/7 = 0.857
    assert calibration.precision_threshold(confidence, correct, 0.5) == pytest.approx(0.70)
    # The most confident photo is wrong and nothing recovers: accept nothing.
    assert calibration.precision_threshold(torch.tensor([0.9, 0.8]), torch.tensor([False, True]), 0.6) == 1.0
    # ... but a wrong photo high up does not stop the walk when enough right ones follow.
    many = torch.linspace(0.99, 0.5, 200)
    hits = torch.ones(200, dtype=torch.bool)
    hits[3] = False
    assert calibration.precision_threshold(many, hits, 0.99) == pytest.approx(0.5)


def test_precision_threshold_never_splits_a_tie():
    confidence = torch.tensor([0.9, 0.9, 0.8])
    correct = torch.tensor([True, False, True])
    # Accepting one of the two 0.9s is not possible: a threshold takes both or neither.
    assert calibration.precision_threshold(confidence, correct, 0.99) == 1.0


def test_expected_precision_threshold_uses_the_calibrated_confidences():
    confidence = torch.tensor([1.0, 0.99, 0.98, 0.97, 0.90, 0.50])
    # Running means: 1, .995, .99, .985, .968, .89 -> down to 0.98 for 99%.
    assert calibration.expected_precision_threshold(confidence, 0.99) == pytest.approx(0.98)
    assert calibration.expected_precision_threshold(confidence, 0.95) == pytest.approx(0.90)
    assert calibration.expected_precision_threshold(torch.tensor([0.9, 0.8]), 0.99) == 1.0
    assert calibration.expected_precision_threshold(torch.tensor([]), 0.99) == 1.0


def test_each_class_gets_its_own_threshold_and_the_held_out_check():
    # Class a: very confident. Class b: one photo at 0.99, the rest lower.
    probs = torch.tensor([[1.0, 0.0], [0.995, 0.005], [0.97, 0.03], [0.01, 0.99], [0.2, 0.8], [0.4, 0.6]])
    labels = torch.tensor([0, 0, 0, 1, 1, 0])
    chosen = calibration.choose_thresholds(probs, labels, ["a", "b"], target=0.99)
    assert chosen["per_class"]["a"] == pytest.approx(0.995)  # means 1, .9975, then .988 < .99
    assert chosen["per_class"]["b"] == pytest.approx(0.99)
    assert chosen["observed_precision"] == {"a": 1.0, "b": 1.0}
    assert chosen["accepted"] == pytest.approx(3 / 6) and chosen["accepted_precision"] == 1.0


def test_open_set_scores():
    logits = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    energy = calibration.unknown_scores(logits, "energy")
    assert energy[0] == pytest.approx(-math.log(2))
    assert energy[1] < energy[0]  # a confident photo looks less unknown
    assert calibration.unknown_scores(logits, "max_logit").tolist() == [0.0, -10.0]
    assert calibration.unknown_scores(logits, "msp")[0] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        calibration.unknown_scores(logits, "magic")
    assert calibration.auroc(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0])) == 1.0
    assert calibration.auroc(torch.tensor([1.0]), torch.tensor([1.0])) == 0.5


def test_known_quantile_flags_the_given_share_of_known_photos():
    scores = torch.arange(100, dtype=torch.float)
    threshold = calibration.known_quantile(scores, 0.05)
    assert int((scores > threshold).sum()) == 5


def test_known_quantile_weighs_each_group_the_same_however_many_photos_it_has():
    # 100 catalogue photos scoring 0..99 and 10 real ones scoring far higher (less familiar).
    scores = torch.cat([torch.arange(100, dtype=torch.float), 200 + torch.arange(10, dtype=torch.float)])
    groups = torch.tensor([0] * 100 + [1] * 10)
    pooled = calibration.known_quantile(scores, 0.05)
    grouped = calibration.known_quantile(scores, 0.05, groups)
    assert int((scores[100:] > pooled).sum()) == 6  # pooled: most real photos flagged, no catalogue one
    flagged = scores > grouped
    # Grouped: the mean of the two groups' flagged shares stays within 5%.
    assert (flagged[:100].float().mean() + flagged[100:].float().mean()) / 2 <= 0.05
    assert int(flagged[100:].sum()) == 1


def test_routing_policy_gives_each_prediction_its_reason():
    config = {
        "routing": {
            "temperature": 2.0,
            "thresholds": {"belts": 0.5, "tops": 0.95},
            "unknown": {"method": "energy", "threshold": -3.0},
        }
    }
    policy = RoutingPolicy.from_config(config, default_threshold=0.8)
    assert policy.reason("belts", 0.6, unknown=-5.0) is None
    assert policy.reason("tops", 0.9, unknown=-5.0) == ReviewReason.LOW_CONFIDENCE
    # unlike every class: never auto-accepted
    assert policy.reason("belts", 0.99, unknown=-2.0) == ReviewReason.UNKNOWN_ITEM
    assert policy.threshold("wallets") == 0.8  # no threshold of its own: the fallback
    probs = policy.calibrate(torch.tensor([[2.0, 0.0]]))
    assert probs[0, 0] == pytest.approx(1 / (1 + math.exp(-1.0)))


def test_a_version_without_routing_uses_the_fallback_threshold_only():
    policy = RoutingPolicy.from_config({}, default_threshold=0.8)
    assert policy.temperature == 1.0 and policy.unknown(torch.zeros(1, 3)) is None
    assert policy.reason("tops", 0.79, None) == ReviewReason.LOW_CONFIDENCE
    assert policy.reason("tops", 0.81, None) is None
