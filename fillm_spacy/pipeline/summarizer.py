"""`fillm_summarizer`: one summary per doc in `doc._.summary`.

    nlp.add_pipe("fillm_summarizer", config={"mode": "lead", "max_sentences": 1})

Modes
- `lead`: the first `max_sentences` sentences.
- `centrality`: the `max_sentences` most central sentences (LexRank-style PageRank over the
  cosine similarities of sentence vectors), in document order. A sentence vector is the mean
  of its tokens' rows in `doc.tensor` when a tok2vec has filled it, else a bag of lowercased
  words (punctuation and whitespace left out).
- `abstractive`: the base LLM (shared with the other components naming it, optionally with a
  LoRA adapter fine-tuned on headline pairs) writes the summary from a prompt, greedily.

Bounds (what a doc of any length costs)
- Sentences: `doc.sents` when a component set sentence boundaries, else a split after tokens
  that are sentence-final marks (".", "!", "?", "…", the danda "।", "؟", "。" and the like).
  Every sentence longer than `max_sentence_tokens` tokens is cut into pieces of at most that
  many tokens, so an unpunctuated 10k-word text still has bounded units.
- Input: only the first `max_input_sentences` sentences are read (centrality is quadratic in
  them). For `abstractive`, the prompt gets the longest run of those first sentences that fits
  in `max_input_pieces` model pieces; if even the first sentence does not fit, its first
  `max_input_pieces` pieces.
- Output: at most `max_sentences` sentences (`lead`, `centrality`; hence at most
  `max_sentences * max_sentence_tokens` tokens) or `max_new_tokens` model pieces on one line
  (`abstractive`; its first non-empty line, without the markup, list marks and "Headline:"
  labels base models wrap it in). An empty or whitespace-only doc gets "" without running
  anything; an abstractive answer with nothing left after cleaning is "" too (no fallback).

The abstractive mode generates through `fillm.LocalLLM.v1` directly rather than through an `llm`
pipe with spacy-llm's `spacy.Summarization.v1`: that task shards a long doc by its context length
and joins one summary per shard (cost and output grow with the doc, where this mode reads a
bounded lead and writes one line), prompts even empty docs, and its 0.7 parser returns the raw
responses (its cleaning is computed and dropped); the headline cleaning and the prompt the
headline adapters are trained on (`build_prompt`) would all have to be replaced anyway. That
prompt and the cleaning live in `fillm_spacy.llm.headline`, which generative fine-tuning
shares.

Nothing here is Tagalog-specific: any language's text is summarized the same way (write an
abstractive `prompt` in the language you want, if not the default).

This module is imported whenever spaCy builds a pipeline (entry point `spacy_factories`), so it
imports nothing heavy at module level.
"""

from typing import Iterable, Iterator, List, Optional

import numpy as np
from spacy.language import Language
from spacy.tokens import Doc, Span

# The headline prompt and its cleanup are shared with generative fine-tuning; `sentences` and
# `clean_headline` stay importable from here.
from ..llm.headline import (
    DEFAULT_MAX_INPUT_PIECES,
    DEFAULT_MAX_INPUT_SENTENCES,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_MAX_SENTENCE_TOKENS,
    DEFAULT_PROMPT,
    build_prompt,
    clean_headline,
    sentences,
    truncated_input,
)

MODES = ("lead", "centrality", "abstractive")


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


class Summarizer:
    """Sets `doc._.summary`; see the module docstring for modes and bounds."""

    def __init__(
        self,
        nlp: Language,
        name: str,
        *,
        mode: str,
        max_sentences: int,
        max_sentence_tokens: int,
        max_input_sentences: int,
        model_name: str,
        adapter: Optional[str],
        prompt: str,
        max_input_pieces: int,
        max_new_tokens: int,
        chat_format: str,
        batch_size: int,
        device: Optional[str],
        dtype: str,
    ):
        if mode not in MODES:
            raise ValueError(f"fillm_summarizer mode must be one of {MODES}, not '{mode}'")
        if min(max_sentences, max_sentence_tokens, max_input_sentences, max_input_pieces, max_new_tokens) < 1:
            raise ValueError("fillm_summarizer limits (max_*) must be at least 1")
        if mode == "abstractive" and "{text}" not in prompt:
            raise ValueError("The abstractive prompt needs a '{text}' placeholder")
        if not Doc.has_extension("summary"):
            Doc.set_extension("summary", default=None)
        self.name = name
        self.mode = mode
        self.max_sentences = max_sentences
        self.max_sentence_tokens = max_sentence_tokens
        self.max_input_sentences = max_input_sentences
        self.prompt = prompt
        self.max_input_pieces = max_input_pieces
        self.batch_size = batch_size
        self.generator = None
        if mode == "abstractive":
            from ..llm.local_model import fillm_local_llm_v1

            if adapter:
                warn_if_adapter_was_trained_otherwise(adapter, prompt, max_input_pieces)
            # Headlines are one line: a newline ends the response.
            self.generator = fillm_local_llm_v1(
                name=model_name,
                adapter=adapter,
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
                chat_format=chat_format,
                context_length=max_input_pieces + max_new_tokens + 512,
                stop=["\n"],
                device=device,
                dtype=dtype,
            )

    def __call__(self, doc: Doc) -> Doc:
        return next(iter(self.pipe([doc])))

    def pipe(self, stream: Iterable[Doc], *, batch_size: Optional[int] = None) -> Iterator[Doc]:
        size = batch_size or self.batch_size
        batch: List[Doc] = []
        for doc in stream:
            batch.append(doc)
            if len(batch) >= size:
                yield from self._summarize(batch)
                batch = []
        if batch:
            yield from self._summarize(batch)

    def _summarize(self, docs: List[Doc]) -> List[Doc]:
        if self.mode == "abstractive":
            todo = [doc for doc in docs if doc.text.strip()]
            prompts = [self.build_prompt(doc) for doc in todo]
            answers = self.generator.generate(prompts) if prompts else []
            for doc, answer in zip(todo, answers):
                doc._.summary = clean_headline(answer)
            for doc in docs:
                if not doc.text.strip():
                    doc._.summary = ""
            return docs
        for doc in docs:
            doc._.summary = self.extract(doc)
        return docs

    def input_sentences(self, doc: Doc) -> List[Span]:
        return sentences(doc, self.max_sentence_tokens, self.max_input_sentences)

    def extract(self, doc: Doc) -> str:
        """The `lead` or `centrality` summary of `doc`."""
        sents = self.input_sentences(doc)
        if not sents:
            return ""
        if self.mode == "lead":
            chosen = sents[: self.max_sentences]
        else:
            scores = centrality_scores(sentence_vectors(sents))
            # Highest score first; an earlier sentence wins a tie (news puts the gist first).
            ranked = sorted(range(len(sents)), key=lambda i: (-round(float(scores[i]), 12), i))
            chosen = [sents[i] for i in sorted(ranked[: self.max_sentences])]
        return " ".join(sent.text.strip() for sent in chosen)

    def truncated_input(self, doc: Doc) -> str:
        """The doc text the abstractive prompt gets (the bound is in the module docstring)."""
        return truncated_input(self.input_sentences(doc), self.generator.llm.tokenizer, self.max_input_pieces)

    def build_prompt(self, doc: Doc) -> str:
        return build_prompt(
            doc,
            self.generator.llm.tokenizer,
            prompt=self.prompt,
            max_input_pieces=self.max_input_pieces,
            max_sentence_tokens=self.max_sentence_tokens,
            max_input_sentences=self.max_input_sentences,
        )


def warn_if_adapter_was_trained_otherwise(adapter: str, prompt: str, max_input_pieces: int) -> None:
    """An adapter tuned on one prompt and input length is weaker on another: say so."""
    import json
    import warnings
    from pathlib import Path

    info_path = Path(adapter) / "fillm-adapter.json"
    if not info_path.exists():
        return
    trained = json.loads(info_path.read_text()).get("summarizer_config") or {}
    differences = {
        key: (trained[key], value)
        for key, value in (("prompt", prompt), ("max_input_pieces", max_input_pieces))
        if key in trained and trained[key] != value
    }
    if differences:
        warnings.warn(
            f"Adapter '{adapter}' was fine-tuned with other summarizer settings (trained, now): {differences}",
            stacklevel=2,
        )


@Language.factory(
    "fillm_summarizer",
    assigns=["doc._.summary"],
    default_config={
        "mode": "lead",
        "max_sentences": 3,
        "max_sentence_tokens": DEFAULT_MAX_SENTENCE_TOKENS,
        "max_input_sentences": DEFAULT_MAX_INPUT_SENTENCES,
        "model_name": "gemma3-270m",
        "adapter": None,
        "prompt": DEFAULT_PROMPT,
        "max_input_pieces": DEFAULT_MAX_INPUT_PIECES,
        "max_new_tokens": DEFAULT_MAX_NEW_TOKENS,
        "chat_format": "auto",
        "batch_size": 4,
        "device": None,
        "dtype": "float32",
    },
)
def make_summarizer(
    nlp: Language,
    name: str,
    mode: str,
    max_sentences: int,
    max_sentence_tokens: int,
    max_input_sentences: int,
    model_name: str,
    adapter: Optional[str],
    prompt: str,
    max_input_pieces: int,
    max_new_tokens: int,
    chat_format: str,
    batch_size: int,
    device: Optional[str],
    dtype: str,
) -> Summarizer:
    """`fillm_summarizer`: writes `doc._.summary`.

    mode: "lead", "centrality" or "abstractive".
    max_sentences: sentences in an extractive summary.
    max_sentence_tokens: longer sentences are cut into units of this many tokens.
    max_input_sentences: only the doc's first sentences are read.
    model_name, adapter, chat_format: the LLM for "abstractive" (see `fillm.LocalLLM.v1`);
        the adapter is a directory saved by `python -m fillm_spacy.llm.finetune train --task headline`.
    prompt: the abstractive prompt, with "{text}" where the (truncated) doc text goes.
    max_input_pieces: model pieces of doc text the abstractive prompt may hold.
    max_new_tokens: longest abstractive summary, in model pieces.
    batch_size: docs summarized together.
    device, dtype: where and in what precision the shared base model is loaded ("abstractive");
        device None: wherever the shared model already is, the CPU on first load.
    """
    return Summarizer(
        nlp,
        name,
        mode=mode,
        max_sentences=max_sentences,
        max_sentence_tokens=max_sentence_tokens,
        max_input_sentences=max_input_sentences,
        model_name=model_name,
        adapter=adapter,
        prompt=prompt,
        max_input_pieces=max_input_pieces,
        max_new_tokens=max_new_tokens,
        chat_format=chat_format,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
    )
