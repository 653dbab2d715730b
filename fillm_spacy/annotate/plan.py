"""The plan of a job: one streaming pass over every input that hashes it, counts its bad records
by reason, and cuts its documents into numbered shards of `shard_size` documents, each with the
input ranges (record indices and byte offsets) it covers. Both engines read a shard back through
those ranges, so a shard holds the same documents however and wherever it is annotated.
"""

import hashlib
import os
from collections import Counter
from typing import Dict, List, Sequence

from .inputs import InputFile, read_records

EXAMPLES_PER_REASON = 20


def plan_shards(files: Sequence[InputFile], text_key: str, shard_size: int) -> Dict:
    """{"inputs": [...size, sha256, records], "shards": [...], "issues": {reason: n},
    "issue_examples": [{"input", "record", "reason"}], "documents": n}."""
    inputs: List[Dict] = []
    shards: List[Dict] = []
    issues: Counter = Counter()
    examples: List[Dict] = []
    current = None
    documents = 0
    for input_index, file in enumerate(files):
        digest = hashlib.sha256()
        records = 0
        for raw in read_records(file, input_index, text_key, on_bytes=digest.update):
            records += 1
            for reason in raw.reasons:
                issues[reason] += 1
                if issues[reason] <= EXAMPLES_PER_REASON:
                    examples.append({"input": file.name, "record": raw.index, "reason": reason})
            if raw.record is None:
                continue
            if current is None:
                current = {"index": len(shards), "first_document": documents, "documents": 0, "ranges": []}
            ranges = current["ranges"]
            if ranges and ranges[-1]["input"] == input_index:
                ranges[-1]["records"][1] = raw.index + 1
                ranges[-1]["bytes"][1] = raw.end
            else:
                ranges.append(
                    {"input": input_index, "records": [raw.index, raw.index + 1], "bytes": [raw.start, raw.end]}
                )
            current["documents"] += 1
            documents += 1
            if current["documents"] == shard_size:
                shards.append(current)
                current = None
        inputs.append(
            {
                "path": file.path,
                "name": file.name,
                "format": file.format,
                "bytes": os.path.getsize(file.path),
                "sha256": digest.hexdigest(),
                "records": records,
            }
        )
    if current is not None:
        shards.append(current)
    return {
        "inputs": inputs,
        "shards": shards,
        "issues": dict(sorted(issues.items())),
        "issue_examples": examples,
        "documents": documents,
    }
