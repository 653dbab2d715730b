"""Annotating corpora with a fillm pipeline at scale: resumable numbered shards (DocBin, CoNLL-U,
JSONL) plus a manifest, bad input counted by reason, a local engine (processes) and a Ray Data
engine (actors across machines).

    python -m fillm_spacy.annotate tl_fillm corpus.jsonl out/ --format conllu --n-process 2

Modules: inputs (files, records, repairs), plan (shards), writers (formats, atomic writes),
manifest (manifest and journal), worker (one shard in one worker), local and ray_engine
(engines; preload: what the local engine's fork server imports), progress (bar, summary),
job (one job end to end), errors, cli. Importing this package is cheap: spaCy, torch and Ray
load only when a job runs.
"""

from .errors import AnnotateError, Interrupted
from .job import annotate

__all__ = ["AnnotateError", "Interrupted", "annotate"]
