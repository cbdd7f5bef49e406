"""Evaluation metrics against hand-computed answers and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from pseudohealthy.metrics import (
    bootstrap_ci,
    dice,
    distance_to_lesion_mm,
    k_pixels_for,
    lesion_cnr,
    oracle_dice,
    pixel_auprc,
    pixel_auroc,
    recall_at_k,
)


def test_pixel_metrics_by_hand():
    truth = np.array([1, 0, 1, 0])
    score = np.array([0.9, 0.8, 0.7, 0.1])
    # ranks: hit (P=1, R=.5), miss, hit (P=2/3, R=1): AP = .5·1 + .5·2/3
    assert pixel_auprc(truth, score) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # positive-negative pairs ordered correctly: 3 of 4
    assert pixel_auroc(truth, score) == pytest.approx(0.75)
    assert np.isnan(pixel_auprc(np.zeros(4), score)) and np.isnan(pixel_auroc(np.ones(4), score))


@pytest.mark.parametrize("seed", range(5))
def test_pixel_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    truth = rng.random((6, 7, 5)) < 0.1
    score = rng.random((6, 7, 5)) + truth * rng.random()
    assert pixel_auprc(truth, score) == pytest.approx(average_precision_score(truth.ravel(), score.ravel()))
    assert pixel_auroc(truth, score) == pytest.approx(roc_auc_score(truth.ravel(), score.ravel()))


def test_dice_and_oracle_threshold():
    assert dice([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.5)
    assert dice([0, 0], [0, 0]) == 1.0 and dice([1, 0], [0, 0]) == 0.0
    truths = [np.array([0, 0, 1, 1]), np.array([0, 1, 0, 0])]
    scores = [np.array([0.1, 0.2, 0.8, 0.9]), np.array([0.0, 0.7, 0.3, 0.1])]
    best, threshold = oracle_dice(truths, scores)
    assert best == pytest.approx(1.0) and 0.3 <= threshold < 0.7


def test_oracle_dice_finds_the_best_threshold_for_a_tiny_lesion():
    # A lesion of 0.05 % of the voxels: the best threshold lies in the far tail of the scores, so the
    # oracle must beat (or equal) the Dice at every threshold, here checked against all observed values.
    rng = np.random.default_rng(0)
    truths, scores = [], []
    for _ in range(3):
        truth = np.zeros(20000, bool)
        truth[:10] = True
        truths.append(truth)
        scores.append(rng.normal(size=truth.size) + 3.5 * truth)
    exhaustive = max(np.mean([dice(s > q, t) for t, s in zip(truths, scores)])
                     for q in np.sort(np.concatenate(scores))[-200:])
    best, _ = oracle_dice(truths, scores)
    assert best >= exhaustive - 0.02 and best > 0.3


def test_recall_at_k_by_hand():
    truth = np.zeros((3, 10, 10), bool)
    score = np.zeros((3, 10, 10))
    truth[0, 5, 5] = True
    score[0, 5, 8] = 1.0  # maximum 3 pixels from the lesion
    truth[1, 2:4, 2:4] = True
    score[1, 3, 3] = 1.0  # maximum inside the lesion
    score[2, 0, 0] = 5.0  # no lesion on this slice: not counted
    assert recall_at_k(truth, score, 3) == (1.0, 2)
    assert recall_at_k(truth, score, 2.9) == (0.5, 2)
    assert k_pixels_for(5, pixel_mm=3.0) == pytest.approx(5 / 3)


def test_distance_to_lesion_in_mm():
    truth = np.zeros((8, 8, 3), bool)
    truth[0, 0, 0] = True
    assert distance_to_lesion_mm((3, 4, 0), truth, (1, 1, 1)) == pytest.approx(5.0)
    assert distance_to_lesion_mm((3, 4, 0), truth, (2, 2, 2)) == pytest.approx(10.0)
    assert distance_to_lesion_mm((0, 0, 0), truth, (1, 1, 1)) == 0.0
    assert np.isnan(distance_to_lesion_mm((0, 0, 0), np.zeros_like(truth), (1, 1, 1)))


def test_bootstrap_interval():
    assert bootstrap_ci([3.0] * 5, np.mean) == (3.0, 3.0)
    values = list(np.random.default_rng(1).normal(10, 2, 200))
    low, high = bootstrap_ci(values, np.mean)
    # the normal-theory 95 % interval of a mean of 200 draws with σ ≈ 2 is ±0.28
    assert low < np.mean(values) < high and 0.4 < high - low < 0.7
    assert all(np.isnan(bootstrap_ci([], np.mean)))


def test_lesion_cnr_known_answer():
    """Healthy voxels 0, 1, 2, 3, 4 (median 2, MAD 1) and a lesion of 5 and 7 (mean 6): (6 − 2) / 1.4826."""
    score = np.array([0, 1, 2, 3, 4, 5, 7, 100], float)
    lesion = np.array([0, 0, 0, 0, 0, 1, 1, 0], bool)
    brain = np.array([1, 1, 1, 1, 1, 1, 1, 0], bool)  # the 100 lies outside the brain
    assert lesion_cnr(score, lesion, brain) == pytest.approx(4 / 1.4826)
    assert np.isnan(lesion_cnr(score, np.zeros(8, bool), brain))
    assert np.isnan(lesion_cnr(np.where(lesion, 1.0, 0.0), lesion, brain))  # no healthy spread
