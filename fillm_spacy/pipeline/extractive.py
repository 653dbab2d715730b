"""Extractive summaries: the first sentences (lead), or the most central ones (LexRank-style
PageRank over the cosine similarities of sentence vectors), in document order."""

from typing import List

import numpy as np
from spacy.tokens import Span


def sentence_vectors(sents: List[Span]) -> np.ndarray:
    """One row per sentence: mean `doc.tensor` rows if the doc has token vectors, else a bag of
    lowercased words."""
    doc = sents[0].doc
    tensor = doc.tensor
    if tensor is not None and tensor.size and tensor.shape[0] == len(doc):
        rows = []
        for sent in sents:
            keep = [t.i for t in sent if not (t.is_punct or t.is_space)] or [t.i for t in sent]
            rows.append(np.asarray(tensor[keep]).mean(axis=0))
        return np.vstack(rows).astype("float64")
    vocabulary: dict = {}
    counts = []
    for sent in sents:
        row: dict = {}
        for token in sent:
            if token.is_punct or token.is_space:
                continue
            column = vocabulary.setdefault(token.lower_, len(vocabulary))
            row[column] = row.get(column, 0) + 1
        counts.append(row)
    matrix = np.zeros((len(sents), max(len(vocabulary), 1)), dtype="float64")
    for i, row in enumerate(counts):
        for column, count in row.items():
            matrix[i, column] = count
    return matrix


def centrality_scores(vectors: np.ndarray, damping: float = 0.85, iterations: int = 100) -> np.ndarray:
    """PageRank over the graph of non-negative cosine similarities between sentences (no
    self-loops): a sentence is central when it resembles many sentences that are central."""
    n = vectors.shape[0]
    if n == 1:
        return np.ones(1)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    similarity = np.clip(unit @ unit.T, 0.0, None)
    np.fill_diagonal(similarity, 0.0)
    out_weight = similarity.sum(axis=1, keepdims=True)
    # A sentence similar to nothing spreads its weight evenly (no rank sink).
    transition = np.where(out_weight > 0, similarity / np.where(out_weight > 0, out_weight, 1.0), 1.0 / n)
    scores = np.full(n, 1.0 / n)
    for _ in range(iterations):
        updated = (1 - damping) / n + damping * transition.T @ scores
        if np.abs(updated - scores).sum() < 1e-10:
            scores = updated
            break
        scores = updated
    return scores


def extractive_summary(sents: List[Span], mode: str, max_sentences: int) -> str:
    """The `lead` or `centrality` summary of a doc's (bounded) sentences."""
    if not sents:
        return ""
    if mode == "lead":
        chosen = sents[:max_sentences]
    else:
        scores = centrality_scores(sentence_vectors(sents))
        # Highest score first; an earlier sentence wins a tie (news puts the gist first).
        ranked = sorted(range(len(sents)), key=lambda i: (-round(float(scores[i]), 12), i))
        chosen = [sents[i] for i in sorted(ranked[:max_sentences])]
    return " ".join(sent.text.strip() for sent in chosen)
