"""Paired significance tests over items (sentences, documents): the one statistics module of the
evaluation (compare and ROUGE both use it).

* `paired_bootstrap`: a corpus-level score made from summed (tp, fp, fn) counts, as spaCy's
  Scorer makes it; `paired_bootstrap_mean`: the mean of per-item scores (ROUGE). Both resample
  items with replacement through scipy.stats.bootstrap (paired, vectorized; Efron & Tibshirani;
  Koehn 2004; Berg-Kirkpatrick et al. 2012). The CI is the percentile interval of the resampled
  difference a - b; the two-sided p-value is the share of resampled differences at least as far
  from the observed one as the observed one is from zero (the bootstrap distribution shifted to
  the null).
* `paired_t_test`: scipy.stats.ttest_rel on per-item scores (the FiLLM paper's test), with the t
  interval of the mean per-item difference.
"""

import math
from dataclasses import dataclass
from typing import Callable, Sequence, Tuple

import numpy as np
from scipy import stats

# How a score is made from (tp, fp, fn) counts; spaCy's PRFScore conventions.
KINDS = ("precision", "recall", "f")
# Resampled values held at once, whatever the number of items: scipy resamples in batches.
MAX_RESAMPLED_VALUES = 2_000_000


def metric_from_counts(counts: np.ndarray, kind: str, zero_division: float = 0.0) -> np.ndarray:
    """Score(s) from counts of shape (..., 3) = (tp, fp, fn).

    precision = tp/(tp+fp), recall = tp/(tp+fn), f = 2tp/(2tp+fp+fn) (= spaCy's 2PR/(P+R)).
    A zero denominator gives `zero_division`: 0.0 is spaCy's PRFScore convention for corpus
    scores (e.g. precision of a system that predicted no entity at all)."""
    counts = np.asarray(counts, dtype=float)
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    if kind == "precision":
        num, den = tp, tp + fp
    elif kind == "recall":
        num, den = tp, tp + fn
    elif kind == "f":
        num, den = 2 * tp, 2 * tp + fp + fn
    else:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), zero_division)


def per_item_scores(counts: np.ndarray, kind: str) -> np.ndarray:
    """One score per item (sentence) from counts of shape (n, 3), for the t-test.

    A zero denominator: F scores 1.0 (nothing to find and nothing predicted is a perfect
    outcome; with 0.0 a sentence without entities would score the same for a system that
    predicts none and one that predicts spurious ones); precision (nothing predicted) and recall
    (nothing to find) are undefined, NaN, and paired_t_test drops that sentence."""
    undefined = 1.0 if kind == "f" else float("nan")
    return metric_from_counts(np.asarray(counts, dtype=float).reshape(-1, 3), kind, zero_division=undefined)


@dataclass
class BootstrapResult:
    score_a: float
    score_b: float
    delta: float  # score_a - score_b on all items
    ci_low: float
    ci_high: float
    p_value: float
    n_items: int
    n_resamples: int


@dataclass
class TTestResult:
    mean_delta: float  # mean of per-item (a - b)
    ci_low: float
    ci_high: float
    p_value: float
    statistic: float
    n_items: int


def paired_bootstrap(
    counts_a: np.ndarray,
    counts_b: np.ndarray,
    kind: str,
    *,
    n_resamples: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Paired bootstrap of a corpus-level score difference (a - b) over items.

    counts_a, counts_b: (n_items, 3) per-item (tp, fp, fn) of systems a and b on the same items;
    a resample's score is made from its summed counts."""
    counts_a = np.asarray(counts_a, dtype=float).reshape(-1, 3)
    counts_b = np.asarray(counts_b, dtype=float).reshape(-1, 3)
    if counts_a.shape != counts_b.shape:
        raise ValueError(f"unpaired counts: {counts_a.shape} vs {counts_b.shape}")

    def corpus_delta(tp_a, fp_a, fn_a, tp_b, fp_b, fn_b, axis):
        summed_a = np.stack([tp_a.sum(axis), fp_a.sum(axis), fn_a.sum(axis)], axis=-1)
        summed_b = np.stack([tp_b.sum(axis), fp_b.sum(axis), fn_b.sum(axis)], axis=-1)
        return metric_from_counts(summed_a, kind) - metric_from_counts(summed_b, kind)

    scores = (
        float(metric_from_counts(counts_a.sum(axis=0), kind)),
        float(metric_from_counts(counts_b.sum(axis=0), kind)),
    )
    # Each count column is one paired sample: scipy resamples all six with the same indices.
    return _bootstrap_difference(
        (*counts_a.T, *counts_b.T), corpus_delta, scores, n_resamples=n_resamples, seed=seed, confidence=confidence
    )


def paired_bootstrap_mean(
    scores_a: Sequence[float],
    scores_b: Sequence[float],
    *,
    n_resamples: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Paired bootstrap of the difference of mean per-item scores (a - b), e.g. ROUGE F1 per doc."""
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"unpaired scores: {a.shape} vs {b.shape}")
    return _bootstrap_difference(
        (a, b),
        lambda x, y, axis: x.mean(axis) - y.mean(axis),
        (float(a.mean()), float(b.mean())),
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
    )


def _bootstrap_difference(
    samples: Tuple[np.ndarray, ...],
    delta: Callable[..., np.ndarray],
    scores: Tuple[float, float],
    *,
    n_resamples: int,
    seed: int,
    confidence: float,
) -> BootstrapResult:
    """scipy's paired, vectorized bootstrap of `delta(*samples, axis)` (the a - b difference), with
    the observed scores (a, b), the percentile CI and the p-value of the module docstring."""
    n = len(samples[0])
    if n < 2:
        raise ValueError(f"a paired bootstrap needs at least two items, got {n}")
    observed = scores[0] - scores[1]
    result = stats.bootstrap(
        samples,
        delta,
        paired=True,
        vectorized=True,
        n_resamples=n_resamples,
        batch=max(1, MAX_RESAMPLED_VALUES // (n * len(samples))),
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),  # scipy>=1.15 (pyproject.toml): older releases lack rng=
    )
    deltas = result.bootstrap_distribution
    # Identical systems: every resampled difference is 0, p = 1.
    tol = 1e-12
    extreme = np.count_nonzero(np.abs(deltas - observed) >= abs(observed) - tol)
    p_value = (extreme + 1) / (n_resamples + 1)
    interval = result.confidence_interval
    return BootstrapResult(
        scores[0], scores[1], observed, float(interval.low), float(interval.high), float(p_value), n, n_resamples
    )


def paired_t_test(scores_a: Sequence[float], scores_b: Sequence[float], *, confidence: float = 0.95) -> TTestResult:
    """scipy's paired t-test of per-item scores, with the t interval of the mean difference.
    Pairs with a NaN (an undefined score) on either side are left out; n_items counts the rest."""
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"unpaired scores: {a.shape} vs {b.shape}")
    defined = ~(np.isnan(a) | np.isnan(b))
    a, b = a[defined], b[defined]
    n = len(a)
    diffs = a - b
    mean = float(diffs.mean()) if n else float("nan")
    if n < 2:
        return TTestResult(mean, float("nan"), float("nan"), float("nan"), float("nan"), n)
    if float(diffs.std(ddof=1)) == 0.0:
        # scipy returns nan here (0/0) or an infinite statistic; the answer is known.
        p_value = 1.0 if mean == 0.0 else 0.0
        statistic = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
        return TTestResult(mean, mean, mean, p_value, statistic, n)
    result = stats.ttest_rel(a, b)
    interval = result.confidence_interval(confidence)
    return TTestResult(
        mean, float(interval.low), float(interval.high), float(result.pvalue), float(result.statistic), n
    )
