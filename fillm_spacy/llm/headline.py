"""The headline prompt and the cleanup of the model's answer, in one place for the two users that
must agree on them: the abstractive `fillm_summarizer` (pipeline/summarizer.py), which asks the
base LLM for a headline, and generative fine-tuning (`python -m fillm_spacy.finetune train
--task headline`), which trains an adapter on the very prompts the summarizer will send.

- `sentences`: a doc's sentences, each at most `max_sentence_tokens` tokens (`doc.sents` when a
  component set boundaries, else a split after sentence-final marks);
- `truncated_input`: the longest run of the first sentences that fits in `max_input_pieces`
  model pieces (if even the first does not fit, its first `max_input_pieces` pieces);
- `build_prompt`: the prompt with that text in place of "{text}";
- `clean_headline`: the answer's first non-empty line without the markup, list marks and
  "Headline:" labels base models wrap it in.

Imported whenever spaCy builds a pipeline (through the summarizer's entry point), so it imports
nothing heavy: the tokenizer is passed in.
"""

import re
from typing import Iterable, Iterator, List, Optional

from spacy.tokens import Doc, Span

# Latin, Devanagari (danda), Arabic, Urdu and CJK sentence-final marks.
SENTENCE_END = {".", "!", "?", "…", "...", "?!", "!?", "।", "॥", "؟", "۔", "。", "！", "？"}
DEFAULT_PROMPT = (
    "Write a one-sentence headline for the news article below, in the language of the article.\n\n"
    "Article: {text}\n\n"
    "Headline:"
)
# The summarizer's defaults, which fine-tuning prompts with too.
DEFAULT_MAX_SENTENCE_TOKENS = 80
DEFAULT_MAX_INPUT_SENTENCES = 200
DEFAULT_MAX_INPUT_PIECES = 768
DEFAULT_MAX_NEW_TOKENS = 48


def sentences(doc: Doc, max_sentence_tokens: int, max_sentences: Optional[int] = None) -> List[Span]:
    """The doc's sentences (see the module docstring), each at most `max_sentence_tokens` tokens,
    whitespace-only sentences left out; stops after `max_sentences` of them."""
    if doc.has_annotation("SENT_START"):
        units: Iterable[Span] = doc.sents
    else:
        units = _punctuation_sentences(doc)
    result: List[Span] = []
    for unit in units:
        for start in range(unit.start, unit.end, max_sentence_tokens):
            piece = doc[start : min(start + max_sentence_tokens, unit.end)]
            if piece.text.strip():
                result.append(piece)
                if max_sentences is not None and len(result) >= max_sentences:
                    return result
    return result


def _punctuation_sentences(doc: Doc) -> Iterator[Span]:
    """Sentences ending after a sentence-final punctuation token (and any closing quotes or
    brackets right after it), for docs no component has split."""
    start = 0
    i = 0
    while i < len(doc):
        if doc[i].text in SENTENCE_END:
            end = i + 1
            while (
                end < len(doc) and (doc[end].is_quote or doc[end].is_right_punct) and doc[end].text not in SENTENCE_END
            ):
                end += 1
            yield doc[start:end]
            start = i = end
            continue
        i += 1
    if start < len(doc):
        yield doc[start:]


def truncated_input(sents: Iterable[Span], tokenizer, max_input_pieces: int) -> str:
    """The text of the first `sents` that fits in `max_input_pieces` pieces of `tokenizer` (a
    Hugging Face fast tokenizer), as the prompt gets it (see the module docstring)."""
    kept: List[str] = []
    used = 0
    for sent in sents:
        text = sent.text.strip()
        # Counted as the generator encodes the text: a "<eos>" in it is several pieces.
        n_pieces = len(tokenizer(" " + text, add_special_tokens=False, split_special_tokens=True)["input_ids"])
        if used + n_pieces > max_input_pieces:
            if not kept:
                encoding = tokenizer(
                    text, add_special_tokens=False, return_offsets_mapping=True, split_special_tokens=True
                )
                end_char = encoding["offset_mapping"][max_input_pieces - 1][1]
                kept.append(text[:end_char])
            break
        kept.append(text)
        used += n_pieces
    return " ".join(kept)


def build_prompt(
    doc: Doc,
    tokenizer,
    *,
    prompt: str = DEFAULT_PROMPT,
    max_input_pieces: int = DEFAULT_MAX_INPUT_PIECES,
    max_sentence_tokens: int = DEFAULT_MAX_SENTENCE_TOKENS,
    max_input_sentences: int = DEFAULT_MAX_INPUT_SENTENCES,
) -> str:
    """The headline prompt for `doc`: `prompt` with the doc's bounded lead in place of "{text}"."""
    sents = sentences(doc, max_sentence_tokens, max_input_sentences)
    return prompt.replace("{text}", truncated_input(sents, tokenizer, max_input_pieces))


_MARKUP = re.compile(r"<[^>]*>|\*\*|__")
_LIST_MARK = re.compile(r"^(?:[*#>\-•]+|\d+[.)])\s*")
_LABEL = re.compile(r"^(?:headline|title|summary|article|pamagat|buod|ulo ng balita)\s*:\s*", re.IGNORECASE)


def clean_headline(answer: str) -> str:
    """The first line of a response with something in it, without what base models wrap
    headlines in: HTML/markdown emphasis, a list or heading mark, a "Headline:" label, quotes."""
    for line in answer.splitlines():
        line = _MARKUP.sub("", line).strip()
        line = _LIST_MARK.sub("", line)
        line = _LABEL.sub("", line)
        line = line.strip().strip("\"“”'").strip()
        if line:
            return line
    return ""
