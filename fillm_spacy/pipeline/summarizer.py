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

from dataclasses import asdict, dataclass
from typing import Iterable, Iterator, List, Optional

from spacy.language import Language
from spacy.tokens import Doc, Span

# The headline prompt and its cleanup are shared with generative fine-tuning (llm/headline.py);
# the extractive modes live in extractive.py.
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
from .extractive import extractive_summary

MODES = ("lead", "centrality", "abstractive")


class Summarizer:
    """Sets `doc._.summary`; see the module docstring for modes and bounds."""

    def __init__(self, nlp: Language, name: str, settings: "SummarizerSettings"):
        settings.check()
        if not Doc.has_extension("summary"):
            Doc.set_extension("summary", default=None)
        self.name = name
        self.settings = settings
        self.generator = None
        if settings.mode == "abstractive":
            from ..llm.local_model import fillm_local_llm_v1

            if settings.adapter:
                warn_if_adapter_was_trained_otherwise(settings.adapter, settings.prompt, settings.max_input_pieces)
            # Headlines are one line: a newline ends the response.
            self.generator = fillm_local_llm_v1(
                model_name=settings.model_name,
                adapter=settings.adapter,
                max_new_tokens=settings.max_new_tokens,
                batch_size=settings.batch_size,
                chat_format=settings.chat_format,
                context_length=settings.max_input_pieces + settings.max_new_tokens + 512,
                stop=["\n"],
                device=settings.device,
                dtype=settings.dtype,
            )

    def __call__(self, doc: Doc) -> Doc:
        return next(iter(self.pipe([doc])))

    def pipe(self, stream: Iterable[Doc], *, batch_size: Optional[int] = None) -> Iterator[Doc]:
        size = batch_size or self.settings.batch_size
        batch: List[Doc] = []
        for doc in stream:
            batch.append(doc)
            if len(batch) >= size:
                yield from self._summarize(batch)
                batch = []
        if batch:
            yield from self._summarize(batch)

    def _summarize(self, docs: List[Doc]) -> List[Doc]:
        if self.settings.mode == "abstractive":
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
        return sentences(doc, self.settings.max_sentence_tokens, self.settings.max_input_sentences)

    def extract(self, doc: Doc) -> str:
        """The `lead` or `centrality` summary of `doc`."""
        return extractive_summary(self.input_sentences(doc), self.settings.mode, self.settings.max_sentences)

    def truncated_input(self, doc: Doc) -> str:
        """The doc text the abstractive prompt gets (the bound is in the module docstring)."""
        return truncated_input(self.input_sentences(doc), self.generator.llm.tokenizer, self.settings.max_input_pieces)

    def build_prompt(self, doc: Doc) -> str:
        return build_prompt(
            doc,
            self.generator.llm.tokenizer,
            prompt=self.settings.prompt,
            max_input_pieces=self.settings.max_input_pieces,
            max_sentence_tokens=self.settings.max_sentence_tokens,
            max_input_sentences=self.settings.max_input_sentences,
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


@dataclass
class SummarizerSettings:
    """What `fillm_summarizer` does; the factory's arguments (documented there)."""

    mode: str = "lead"
    max_sentences: int = 3
    max_sentence_tokens: int = DEFAULT_MAX_SENTENCE_TOKENS
    max_input_sentences: int = DEFAULT_MAX_INPUT_SENTENCES
    model_name: str = "gemma3-270m"
    adapter: Optional[str] = None
    prompt: str = DEFAULT_PROMPT
    max_input_pieces: int = DEFAULT_MAX_INPUT_PIECES
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    chat_format: str = "auto"
    batch_size: int = 4
    device: Optional[str] = None
    dtype: str = "float32"

    def check(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"fillm_summarizer mode must be one of {MODES}, not '{self.mode}'")
        limits = (self.max_sentences, self.max_sentence_tokens, self.max_input_sentences)
        if min(*limits, self.max_input_pieces, self.max_new_tokens) < 1:
            raise ValueError("fillm_summarizer limits (max_*) must be at least 1")
        if self.mode == "abstractive" and "{text}" not in self.prompt:
            raise ValueError("The abstractive prompt needs a '{text}' placeholder")


@Language.factory("fillm_summarizer", assigns=["doc._.summary"], default_config=asdict(SummarizerSettings()))
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
        the adapter is a directory saved by `python -m fillm_spacy.finetune train --task headline`.
    prompt: the abstractive prompt, with "{text}" where the (truncated) doc text goes.
    max_input_pieces: model pieces of doc text the abstractive prompt may hold.
    max_new_tokens: longest abstractive summary, in model pieces.
    batch_size: docs summarized together.
    device, dtype: where and in what precision the shared base model is loaded ("abstractive");
        device None: wherever the shared model already is, the CPU on first load.
    """
    settings = {key: value for key, value in locals().items() if key not in ("nlp", "name")}
    return Summarizer(nlp, name, SummarizerSettings(**settings))
