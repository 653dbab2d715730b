"""What one worker does with one shard, the same in every engine (in-process, a local process,
a Ray actor): load the pipeline once, turn the shard's records into Docs, annotate them in bounded
batches with `nlp.pipe`, and serialize the shard.

- A document longer than `part_tokens` tokens is annotated in parts of at most that many tokens
  (cut after a line break or a sentence end where one is near) and joined back into one Doc with
  the exact text (spaCy's Doc.from_docs); the encoder windows each part as usual.
- A batch that raises is annotated again one document at a time; a document that still raises is
  left out and counted (`annotation_error`, with its input, record and message).
- With a timeout, faulthandler ends the process with a stack dump if a shard hangs: a wait on it
  is bounded (engines retry the shard in a fresh process, or stop with a one-line error).
"""
import faulthandler
import io
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from .inputs import InputFile, Record, read_range
from .writers import serialize_shard, shard_file_name

ERROR_EXAMPLES = 20
_BREAKS = {".", "!", "?", "…"}


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


def part_bounds(doc, limit: int) -> List[Tuple[int, int]]:
    """Token ranges of at most `limit` tokens covering the doc; each cut falls after a line
    break or a sentence-final mark in the second half of its part when there is one."""
    bounds, start, n = [], 0, len(doc)
    while n - start > limit:
        end = start + limit
        window = range(end, start + limit // 2, -1)
        cut = next((i for i in window if doc[i - 1].is_space and "\n" in doc[i - 1].text), None)
        if cut is None:
            cut = next((i for i in window if doc[i - 1].text in _BREAKS and doc[i - 1].whitespace_), end)
        bounds.append((start, cut))
        start = cut
    bounds.append((start, n))
    return bounds


class ShardAnnotator:
    """One loaded pipeline, annotating shards (lists of records) into serialized shards."""

    def __init__(self, model: str, fmt: str, names: Sequence[str], batch_size: Optional[int] = None,
                 part_tokens: int = 10000, gpu_id: int = -1, timeout: float = 0):
        self.nlp = load_pipeline(model, gpu_id)
        self.fmt = fmt
        self.names = list(names)
        self.batch_size = batch_size or self.nlp.batch_size
        self.part_tokens = part_tokens
        self.timeout = timeout

    def parts(self, record: Record) -> List:
        from spacy.tokens import Doc

        if record.text is not None:
            doc = self.nlp.tokenizer(record.text)  # not make_doc: nlp.max_length does not apply to parts
        else:
            doc = Doc(self.nlp.vocab, words=record.words, spaces=record.spaces)
        if len(doc) <= self.part_tokens:
            return [doc]
        return [doc[a:b].as_doc() for a, b in part_bounds(doc, self.part_tokens)]

    def chunks(self, records: Sequence[Record], issues: Counter, errors: List[Dict]):
        """(records, their parts) groups of at most batch_size documents and, unless one
        document alone is longer, part_tokens tokens."""
        chunk, tokens = [], 0
        for record in records:
            try:
                parts = self.parts(record)
            except Exception as error:
                self.count_error(record, error, issues, errors)
                continue
            size = sum(len(p) for p in parts)
            if chunk and (len(chunk) == self.batch_size or tokens + size > self.part_tokens):
                yield chunk
                chunk, tokens = [], 0
            chunk.append((record, parts))
            tokens += size
        if chunk:
            yield chunk

    def count_error(self, record: Record, error: Exception, issues: Counter, errors: List[Dict]) -> None:
        issues["annotation_error"] += 1
        if len(errors) < ERROR_EXAMPLES:
            message = f"{type(error).__name__}: {error}".splitlines()[0][:300]
            errors.append({"input": self.names[record.input], "record": record.index,
                           "reason": "annotation_error", "error": message})

    def annotate_parts(self, parts: List) -> List:
        tokens = sum(len(p) for p in parts)
        batch = len(parts) if tokens <= self.part_tokens else 1
        return list(self.nlp.pipe(parts, batch_size=max(1, batch)))

    def annotate(self, records: Sequence[Record], issues: Counter, errors: List[Dict],
                 on_batch: Optional[Callable[[int, int], None]] = None) -> List[Tuple[Record, object]]:
        from spacy.tokens import Doc

        done = []
        for chunk in self.chunks(records, issues, errors):
            flat = [p for _, parts in chunk for p in parts]
            try:
                annotated = self.annotate_parts(flat)
                grouped, position = [], 0
                for record, parts in chunk:
                    grouped.append((record, annotated[position:position + len(parts)]))
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

    def run(self, records: Sequence[Record], first_document: int,
            on_batch: Optional[Callable[[int, int], None]] = None) -> Tuple[bytes, Dict]:
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
    gpu_id: int
    timeout: float
    output_dir: str

    @property
    def names(self) -> List[str]:
        return [f.name for f in self.files]

    def annotator(self, gpu_id: Optional[int] = None, timeout: Optional[float] = None) -> "ShardAnnotator":
        return ShardAnnotator(self.model, self.fmt, self.names, self.batch_size, self.part_tokens,
                              self.gpu_id if gpu_id is None else gpu_id, self.timeout if timeout is None else timeout)

    def shard_path(self, index: int) -> Path:
        return Path(self.output_dir) / shard_file_name(index, self.fmt)


def shard_records(job: Job, shard: Dict) -> List[Record]:
    """The records of one planned shard, read back through its input ranges."""
    return [record for span in shard["ranges"] for record in read_range(job.files, job.text_key, span)]
