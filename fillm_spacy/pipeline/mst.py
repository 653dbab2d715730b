"""Tree decoding for the biaffine parser: the maximum spanning tree with exactly one root.

Scores are a sentence's (n+1, n+1) matrix indexed [dependent, head], index 0 the ROOT, as the
biaffine scorer makes them. Chu-Liu/Edmonds (via `ufal.chu_liu_edmonds`) finds the best
non-projective tree; UD wants one root per sentence, which the plain MST does not promise.
"""
from typing import Tuple

import numpy as np
from ufal.chu_liu_edmonds import chu_liu_edmonds


def decode_tree(scores) -> np.ndarray:
    """Heads of the sentence's tokens: heads[i - 1] is the head of token i (0 = ROOT).

    The result is the highest-scoring tree in which exactly one token hangs from the ROOT.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.shape[0] - 1
    if scores.shape != (n + 1, n + 1):
        raise ValueError(f"Arc scores must be square (n+1, n+1), got {scores.shape}")
    if n <= 0:
        return np.zeros((0,), dtype=np.int64)
    if n == 1:
        return np.zeros((1,), dtype=np.int64)
    if not np.isfinite(scores[1:]).all():
        raise ValueError("Arc scores contain NaN or infinite values: the parser's model diverged.")
    allowed = allowed_arcs(scores)
    heads, _ = _mst(allowed)
    roots = np.flatnonzero(heads == 0)
    if len(roots) == 1:  # the best tree overall is single-rooted, so it is the answer
        return heads
    return _best_single_root_tree(allowed)


def allowed_arcs(scores: np.ndarray) -> np.ndarray:
    """The scores with the forbidden arcs as NaN (what chu_liu_edmonds skips): nothing heads
    the ROOT and no token heads itself."""
    allowed = scores.copy()
    allowed[0, :] = np.nan
    np.fill_diagonal(allowed, np.nan)
    return allowed


def tree_score(scores: np.ndarray, heads: np.ndarray) -> float:
    return float(scores[np.arange(1, len(heads) + 1), heads].sum())


def _mst(allowed: np.ndarray) -> Tuple[np.ndarray, float]:
    heads, _ = chu_liu_edmonds(allowed)
    heads = np.asarray(heads[1:], dtype=np.int64)
    return heads, tree_score(allowed, heads)


def _best_single_root_tree(allowed: np.ndarray) -> np.ndarray:
    """Try each token as the only child of the ROOT, best bound first, and stop once no
    remaining candidate can beat the best tree found: exact, and usually a few MSTs.

    A tree rooted at r scores at most score(r ← ROOT) + Σ_{d ≠ r} max_h score(d ← h) over token heads.
    """
    n = allowed.shape[0] - 1
    root_scores = allowed[1:, 0]
    best_token_head = np.nanmax(allowed[1:, 1:], axis=1)
    bounds = root_scores + best_token_head.sum() - best_token_head
    best_heads, best_score = None, -np.inf
    for root in np.argsort(-bounds, kind="stable"):
        if best_heads is not None and bounds[root] <= best_score:
            break
        candidate = allowed.copy()
        candidate[1:, 0] = np.nan
        candidate[root + 1, 0] = allowed[root + 1, 0]
        heads, score = _mst(candidate)
        if best_heads is None or score > best_score:
            best_heads, best_score = heads, score
    assert best_heads is not None and n > 0
    return best_heads
