"""A frozen linear UPOS probe per layer, on gold words: how much part-of-speech information a
layer's states hold, read the way the encoder reads them (its windows and last-piece pooling).

A softmax layer on standardized states, trained full-batch on the training docs and scored on
the test docs; the LLM never trains. Before/after language adaptation it says whether the
adapter moved what the encoder's heads can read.
"""

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import spacy
import torch
from spacy.tokens import DocBin

from ..layers.token_states import doc_token_states
from ..models.loading import BaseLLM


def read_docs(path: Path, lang: str = "tl") -> List[spacy.tokens.Doc]:
    """Gold docs of a .spacy file; a missing or unreadable file is one clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"'{path}' does not exist: give a .spacy file with gold POS tags (corpus/ud/*.spacy).")
    try:
        docs = list(DocBin().from_disk(path).get_docs(spacy.blank(lang).vocab))
    except Exception as error:
        raise ValueError(f"'{path}' is not a readable DocBin ({type(error).__name__}: {error}).") from None
    if not any(token.pos_ for doc in docs for token in doc):
        raise ValueError(f"'{path}' has no gold POS tags to probe.")
    return docs


def layer_features(llm: BaseLLM, docs, layers: Sequence[int], attention: str, adapter_name: Optional[str]):
    """(states (tokens, layers, hidden), UPOS strings) of the tokens that carry a gold tag."""
    states, tags = [], []
    for doc, doc_states in doc_token_states(llm, docs, layers, attention=attention, adapter_name=adapter_name):
        keep = [i for i, token in enumerate(doc) if token.pos_]
        states.append(doc_states[keep])
        tags.extend(doc[i].pos_ for i in keep)
    return np.concatenate(states), tags


def fit_linear(x: np.ndarray, y: np.ndarray, n_classes: int, epochs: int, seed: int) -> torch.nn.Linear:
    """Softmax regression, full batch (Adam, light weight decay); deterministic for a seed."""
    torch.manual_seed(seed)
    probe = torch.nn.Linear(x.shape[1], n_classes)
    optimizer = torch.optim.Adam(probe.parameters(), lr=0.01, weight_decay=1e-4)
    inputs, targets = torch.as_tensor(x), torch.as_tensor(y)
    for _ in range(epochs):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(probe(inputs), targets).backward()
        optimizer.step()
    return probe


def upos_probe(
    llm: BaseLLM,
    train_docs,
    test_docs,
    layers: Sequence[int],
    *,
    attention: str = "causal",
    adapter_name: Optional[str] = None,
    epochs: int = 300,
    seed: int = 0,
) -> Dict[int, float]:
    """Test UPOS accuracy (%) of a linear probe on each layer's states."""
    train_x, train_tags = layer_features(llm, train_docs, layers, attention, adapter_name)
    test_x, test_tags = layer_features(llm, test_docs, layers, attention, adapter_name)
    labels = sorted(set(train_tags))
    index = {tag: i for i, tag in enumerate(labels)}
    train_y = np.asarray([index[t] for t in train_tags])
    test_y = np.asarray([index.get(t, -1) for t in test_tags])  # a tag unseen in training counts as wrong
    scores = {}
    for column, layer in enumerate(layers):
        x = train_x[:, column]
        mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
        probe = fit_linear((x - mean) / std, train_y, len(labels), epochs, seed)
        with torch.no_grad():
            predicted = probe(torch.as_tensor((test_x[:, column] - mean) / std)).argmax(dim=1).numpy()
        scores[layer] = round(100.0 * float((predicted == test_y).mean()), 2)
    return scores
