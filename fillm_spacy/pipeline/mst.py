"""Tree decoding for the biaffine parser: the maximum spanning tree with exactly one root.

Scores are a sentence's (n+1, n+1) matrix indexed [dependent, head], index 0 the ROOT, as the
biaffine scorer makes them. Chu-Liu/Edmonds (via `ufal.chu_liu_edmonds`) finds the best
non-projective tree; UD wants one root per sentence, which the plain MST does not promise, so
the ROOT's arcs are penalized until the MST itself is single-rooted (one MST call per sentence).
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
    heads, _ = _mst(single_root_arcs(allowed_arcs(scores)))
    if np.count_nonzero(heads == 0) != 1:  # cannot happen with an exact MST (see single_root_arcs)
        raise RuntimeError(
            f"The MST decoder returned {np.count_nonzero(heads == 0)} roots for a {n}-token sentence: "
            "check that ufal.chu_liu_edmonds is installed in the version pyproject.toml asks for."
        )
    return heads


def allowed_arcs(scores: np.ndarray) -> np.ndarray:
    """The scores with the forbidden arcs as NaN (what chu_liu_edmonds skips): nothing heads
    the ROOT and no token heads itself."""
    allowed = scores.copy()
    allowed[0, :] = np.nan
    np.fill_diagonal(allowed, np.nan)
    return allowed


def single_root_arcs(allowed: np.ndarray) -> np.ndarray:
    """The arcs with every ROOT arc lowered by more than the score spread, so that the MST of
    the result is the best single-rooted tree of `allowed` (Zmigrod et al. 2020, "Please mind
    the root"; the same constant lowers every single-rooted tree, so their order is kept).

    Why one root: take any tree with k > 1 ROOT children r1..rk and hang r2..rk from r1 instead
    (their subtrees are disjoint from r1's, so it stays a tree). Each of the k - 1 changed arcs
    loses at most `spread`, and the tree pays the penalty k - 1 fewer times: with a penalty above
    `spread` the single-rooted tree is strictly better, so no maximum has two roots.
    """
    finite = allowed[~np.isnan(allowed)]
    top = finite.max()
    spread = top - finite.min()
    # Shifted so that the best arc is 0: tree scores then stay small next to the margin even
    # when the model's scores carry a large common offset (every tree has n arcs, so the shift
    # keeps the order). The margin per extra root is spread + 1, not a rounding-sized 0+.
    penalized = allowed - top
    penalized[1:, 0] -= 2.0 * spread + 1.0
    return penalized


def tree_score(scores: np.ndarray, heads: np.ndarray) -> float:
    return float(scores[np.arange(1, len(heads) + 1), heads].sum())


def _mst(allowed: np.ndarray) -> Tuple[np.ndarray, float]:
    heads, _ = chu_liu_edmonds(allowed)
    heads = np.asarray(heads[1:], dtype=np.int64)
    return heads, tree_score(allowed, heads)
