"""Shared by test_annotate.py and test_annotate_ray.py: the pipelines (built once per session),
input files, and reading an annotator's output back in shard order."""

import json
import os
import time
from pathlib import Path
from typing import Dict, List

import spacy

from fillm_spacy.annotate.manifest import load_manifest
from fillm_spacy.annotate.writers import output_documents

from ..conftest import DATA, save_tiny_tl_fillm

_BUILT: Dict[str, Path] = {}


def tiny_tl_fillm(tmp_path_factory, model_dir: Path) -> Path:
    """The real tl_fillm config on the tiny random Gemma 3 (conftest.save_tiny_tl_fillm), once."""
    if "tl_fillm" not in _BUILT:
        _BUILT["tl_fillm"] = save_tiny_tl_fillm(model_dir, tmp_path_factory.mktemp("annotate-tl_fillm"))
    return _BUILT["tl_fillm"]


def blank_pipeline(tmp_path_factory) -> Path:
    """spacy.blank("tl") + sentencizer: for what does not depend on the model (a 1 MB line,
    the multiprocessing hazard, which spacy.blank("tl") shows too) at a fraction of the cost."""
    if "blank" not in _BUILT:
        nlp = spacy.blank("tl")
        nlp.add_pipe("sentencizer")
        _BUILT["blank"] = tmp_path_factory.mktemp("annotate-blank") / "pipeline"
        nlp.to_disk(_BUILT["blank"])
    return _BUILT["blank"]


def long_corpus(tmp_path_factory) -> Path:
    """12 documents of ten ALT sentences each (~300 tokens): a shard of one takes a while, so a
    worker or an actor can be killed while most shards are still to do."""
    if "long_corpus" not in _BUILT:
        lines = alt_lines(120)
        rows = [{"id": i // 10, "text": " ".join(lines[i : i + 10])} for i in range(0, 120, 10)]
        _BUILT["long_corpus"] = write_jsonl(tmp_path_factory.mktemp("long-corpus") / "in.jsonl", rows)
    return _BUILT["long_corpus"]


LONG_CORPUS_SETTINGS = {"fmt": "conllu", "shard_size": 1}


def long_corpus_reference(tmp_path_factory, pipeline: Path) -> List[Dict]:
    """The long corpus annotated in this process, uninterrupted: what the pool and Ray must equal."""
    from fillm_spacy.annotate import annotate

    if "long_reference" not in _BUILT:
        out = tmp_path_factory.mktemp("long-reference")
        annotate(str(pipeline), str(long_corpus(tmp_path_factory)), str(out), progress=False, **LONG_CORPUS_SETTINGS)
        _BUILT["long_reference"] = out
    return read_output(_BUILT["long_reference"])


def alt_lines(n: int) -> List[str]:
    return (DATA / "alt-sample.txt").read_text(encoding="utf8").splitlines()[:n]


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf8") as stream:
        for row in rows:
            stream.write((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n")
    return path


def read_output(directory: Path) -> List[Dict]:
    """Every document of a finished output, shard after shard, as comparable dicts."""
    manifest = load_manifest(directory)
    assert manifest is not None and manifest["status"] == "complete", manifest and manifest["status"]
    fmt = manifest["settings"]["format"]
    return [doc for shard in manifest["shards"] for doc in output_documents(fmt, Path(directory) / shard["file"])]


def processes_titled(prefix: bytes) -> List[int]:
    """Pids whose command line starts with `prefix` (Ray names its workers ray::<what they run>)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(prefix):
                found.append(int(entry))
    return found


def wait_for(condition, timeout: float, poll: float = 0.02):
    """The first true value of condition() within `timeout` seconds, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll)
    return None


def journal_lines(directory: Path) -> int:
    path = Path(directory) / "progress.jsonl"
    return len(path.read_text(encoding="utf8").splitlines()) if path.exists() else 0
