"""What one worker does with one shard, the same in every engine (in-process, a local process,
a Ray actor): load the pipeline once, turn the shard's records into Docs, annotate them in bounded
batches with `nlp.pipe`, and serialize the shard.

- A document longer than `part_tokens` tokens or `part_chars` characters (PART_CHARS, 50,000 by
  default: about as much Tagalog text as part_tokens' 10,000 tokens) is annotated in parts of at
  most that many tokens and characters (cut after a line break, else a sentence end, else any
  whitespace, where one is near) and joined back into one Doc
  with the exact text (spaCy's Doc.from_docs); the encoder windows each part as usual. Text is cut
  into character ranges before the tokenizer sees it, so no part, and no token, is longer than
  `part_chars` characters: a run of that many characters without whitespace (a 5 MB line of
  base64) is split into tokens of at most `part_chars` characters. What one part and one batch
  cost is bounded whatever the input; the text is kept character for character.
- A batch that raises is annotated again one document at a time; a document that still raises is
  left out and counted (`annotation_error`, with its input, record and message).
- With a timeout, faulthandler ends the process with a stack dump if a shard hangs: a wait on it
  is bounded (engines retry the shard in a fresh process, or stop with a one-line error).
"""

import bisect
import faulthandler
import io
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from .inputs import InputFile, Record, read_range
from .writers import serialize_shard, shard_file_name

ERROR_EXAMPLES = 20
PART_CHARS = 50000
_BREAKS = {".", "!", "?", "…"}
_UP_TO_SENTENCE_END = re.compile(r".*[.!?…]\s", re.S)  # greedy: the last sentence end in a range
_UP_TO_SPACE = re.compile(r".*\s", re.S)


def load_pipeline(model: str, gpu_id: int = -1):
    """The pipeline, on GPU `gpu_id` when it is >= 0 (spaCy's require_gpu, as `spacy apply`)."""
    import spacy

    from .. import load

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    return load(model)


def start_watchdog(seconds: float) -> bool:
    """End this process with a stack dump if it is still in the shard after `seconds`;
    False where no stream with a file descriptor can take the dump."""
    for stream in (sys.stderr, sys.__stderr__):
        try:
            faulthandler.dump_traceback_later(seconds, exit=True, file=stream)
            return True
        except (AttributeError, ValueError, io.UnsupportedOperation):
            continue
    return False


def text_bounds(text: str, limit: int) -> List[Tuple[int, int]]:
    """Character ranges of at most `limit` characters covering the text; each cut falls after a
    line break, else after a sentence end and its whitespace, else after any whitespace, in the
    second half of its range, and only where none is there, inside a word (at the limit)."""
    bounds, start, n = [], 0, len(text)
    while n - start > limit:
        end, low = start + limit, start + limit // 2
        cut = text.rfind("\n", low, end) + 1
        if not cut:
            found = _UP_TO_SENTENCE_END.match(text, low, end) or _UP_TO_SPACE.match(text, low, end)
            cut = found.end() if found else end
        bounds.append((start, cut))
        start = cut
    bounds.append((start, n))
    return bounds


def split_long_words(words: List[str], spaces: List[bool], limit: int) -> Tuple[List[str], List[bool]]:
    """Given words (a DocBin's tokenization) with each one longer than `limit` characters split
    into pieces of at most `limit` (no space between them): the text is unchanged."""
    if all(len(word) <= limit for word in words):
        return words, spaces
    new_words, new_spaces = [], []
    for word, space in zip(words, spaces):
        pieces = [word[i : i + limit] for i in range(0, len(word), limit)] or [word]
        new_words += pieces
        new_spaces += [False] * (len(pieces) - 1) + [space]
    return new_words, new_spaces


def part_bounds(doc, limit: int, char_limit: Optional[int] = None) -> List[Tuple[int, int]]:
    """Token ranges of at most `limit` tokens and `char_limit` characters (a token longer than
    that alone) covering the doc; each cut falls after a line break or a sentence-final mark in
    the second half of its part when there is one."""
    n = len(doc)
    offsets = [token.idx for token in doc] + [len(doc.text)] if char_limit else None
    bounds, start = [], 0
    while True:
        end = min(n, start + limit)
        if offsets is not None:
            end = max(start + 1, min(end, bisect.bisect_right(offsets, offsets[start] + char_limit) - 1))
        if end >= n:
            break
        window = range(end, start + (end - start) // 2, -1)
        cut = next((i for i in window if doc[i - 1].is_space and "\n" in doc[i - 1].text), None)
        if cut is None:
            cut = next((i for i in window if doc[i - 1].text in _BREAKS and doc[i - 1].whitespace_), end)
        bounds.append((start, cut))
        start = cut
    bounds.append((start, n))
    return bounds


class ShardAnnotator:
    """One loaded pipeline, annotating shards (lists of records) into serialized shards."""

    def __init__(
        self,
        model: str,
        fmt: str,
        names: Sequence[str],
        batch_size: Optional[int] = None,
        part_tokens: int = 10000,
        gpu_id: int = -1,
        timeout: float = 0,
        part_chars: int = PART_CHARS,
    ):
        self.nlp = load_pipeline(model, gpu_id)
        self.fmt = fmt
        self.names = list(names)
        self.batch_size = batch_size or self.nlp.batch_size
        self.part_tokens = part_tokens
        self.part_chars = part_chars
        self.timeout = timeout

    def parts(self, record: Record) -> List:
        """The record as Docs of at most part_tokens tokens and part_chars characters."""
        from spacy.tokens import Doc

        if record.text is not None:  # not make_doc: nlp.max_length does not apply to parts
            docs = [self.nlp.tokenizer(record.text[a:b]) for a, b in text_bounds(record.text, self.part_chars)]
        else:
            words, spaces = split_long_words(record.words, record.spaces, self.part_chars)
            docs = [Doc(self.nlp.vocab, words=words, spaces=spaces)]
        parts = []
        for doc in docs:
            if len(doc) <= self.part_tokens and len(doc.text) <= self.part_chars:
                parts.append(doc)
            else:
                parts += [doc[a:b].as_doc() for a, b in part_bounds(doc, self.part_tokens, self.part_chars)]
        return parts

    def chunks(self, records: Sequence[Record], issues: Counter, errors: List[Dict]):
        """(records, their parts) groups of at most batch_size documents and, unless one
        document alone is longer, part_tokens tokens and part_chars characters."""
        chunk, tokens, chars = [], 0, 0
        for record in records:
            try:
                parts = self.parts(record)
            except Exception as error:
                self.count_error(record, error, issues, errors)
                continue
            size, length = sum(len(p) for p in parts), sum(len(p.text) for p in parts)
            if chunk and (
                len(chunk) == self.batch_size or tokens + size > self.part_tokens or chars + length > self.part_chars
            ):
                yield chunk
                chunk, tokens, chars = [], 0, 0
            chunk.append((record, parts))
            tokens += size
            chars += length
        if chunk:
            yield chunk

    def count_error(self, record: Record, error: Exception, issues: Counter, errors: List[Dict]) -> None:
        issues["annotation_error"] += 1
        if len(errors) < ERROR_EXAMPLES:
            message = f"{type(error).__name__}: {error}".splitlines()[0][:300]
            errors.append(
                {
                    "input": self.names[record.input],
                    "record": record.index,
                    "reason": "annotation_error",
                    "error": message,
                }
            )

    def annotate_parts(self, parts: List) -> List:
        """One batch when the parts are within one part's bounds, else one part at a time."""
        tokens, chars = sum(len(p) for p in parts), sum(len(p.text) for p in parts)
        batch = len(parts) if tokens <= self.part_tokens and chars <= self.part_chars else 1
        return list(self.nlp.pipe(parts, batch_size=max(1, batch)))

    def annotate(
        self,
        records: Sequence[Record],
        issues: Counter,
        errors: List[Dict],
        on_batch: Optional[Callable[[int, int], None]] = None,
    ) -> List[Tuple[Record, object]]:
        from spacy.tokens import Doc

        done = []
        for chunk in self.chunks(records, issues, errors):
            flat = [p for _, parts in chunk for p in parts]
            try:
                annotated = self.annotate_parts(flat)
                grouped, position = [], 0
                for record, parts in chunk:
                    grouped.append((record, annotated[position : position + len(parts)]))
                    position += len(parts)
            except Exception:  # isolate the document that raised; the others go on
                grouped = []
                for record, _ in chunk:
                    try:
                        grouped.append((record, self.annotate_parts(self.parts(record))))
                    except Exception as error:
                        self.count_error(record, error, issues, errors)
            words = 0
            for record, parts in grouped:
                if len(parts) > 1:
                    issues["long_document"] += 1
                doc = parts[0] if len(parts) == 1 else Doc.from_docs(parts, ensure_whitespace=False)
                doc.user_data.update(record.meta)
                done.append((record, doc))
                words += len(doc)
            if on_batch:
                on_batch(len(grouped), words)
        return done

    def run(
        self, records: Sequence[Record], first_document: int, on_batch: Optional[Callable[[int, int], None]] = None
    ) -> Tuple[bytes, Dict]:
        """The serialized shard and its counts: documents, words (tokens), sentences, issues."""
        start = time.time()
        watchdog = bool(self.timeout) and start_watchdog(self.timeout)
        try:
            issues: Counter = Counter()
            errors: List[Dict] = []
            annotated = self.annotate(records, issues, errors, on_batch)
            number = {(r.input, r.index): first_document + n for n, r in enumerate(records)}
            items = [(record, doc, number[record.input, record.index]) for record, doc in annotated]
            payload = serialize_shard(self.fmt, items, self.names)
        finally:
            if watchdog:
                faulthandler.cancel_dump_traceback_later()
        stats = {
            "documents": len(items),
            "words": sum(len(doc) for _, doc, _ in items),
            "sentences": sum(len(list(doc.sents)) for _, doc, _ in items if doc.has_annotation("SENT_START")),
            "issues": dict(sorted(issues.items())),
            "errors": errors,
            "start": start,
            "end": time.time(),
        }
        return payload, stats


class Job(NamedTuple):
    """Everything a worker needs to annotate any shard of a job (picklable, for every engine)."""

    model: str
    fmt: str
    files: Tuple[InputFile, ...]
    text_key: str
    batch_size: Optional[int]
    part_tokens: int
    part_chars: int
    gpu_id: int
    timeout: float
    output_dir: str

    @property
    def names(self) -> List[str]:
        return [f.name for f in self.files]

    def annotator(self, gpu_id: Optional[int] = None, timeout: Optional[float] = None) -> "ShardAnnotator":
        return ShardAnnotator(
            self.model,
            self.fmt,
            self.names,
            self.batch_size,
            self.part_tokens,
            self.gpu_id if gpu_id is None else gpu_id,
            self.timeout if timeout is None else timeout,
            self.part_chars,
        )

    def shard_path(self, index: int) -> Path:
        return Path(self.output_dir) / shard_file_name(index, self.fmt)


def shard_records(job: Job, shard: Dict) -> List[Record]:
    """The records of one planned shard, read back through its input ranges."""
    return [record for span in shard["ranges"] for record in read_range(job.files, job.text_key, span)]
