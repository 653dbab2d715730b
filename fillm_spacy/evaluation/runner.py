"""Running the systems under comparison: `spacy evaluate` of every pipeline on every test set, the
per-doc counts of a pipeline's predictions, and the per-doc counts of a generative run's saved
predictions on the docs it covered."""

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from ..readers.records import read_docs, select_range
from .counts import doc_counts

log = logging.getLogger("fillm_spacy.evaluate")


def find_test_sets(test_dir: Path) -> List[Path]:
    """The .spacy test sets of a directory, in name order."""
    paths = sorted(Path(test_dir).glob("*.spacy"))
    if not paths:
        raise FileNotFoundError(f"no .spacy test sets in {test_dir}")
    return paths


def evaluate(pipelines: Sequence[Tuple[str, str]], test_dir: Path, output_dir: Path, gpu_id: int = -1) -> List[Path]:
    """`python -m spacy evaluate` of every pipeline on every test set in test_dir: the same
    command, tokenizer and scorer for every system. Writes <output_dir>/<name>/<test>.json."""
    written = []
    for name, model in pipelines:
        (output_dir / name).mkdir(parents=True, exist_ok=True)
        for test in find_test_sets(test_dir):
            out = output_dir / name / f"{test.stem}.json"
            command = [
                sys.executable,
                "-m",
                "spacy",
                "evaluate",
                model,
                str(test),
                "--output",
                str(out),
                "--gpu-id",
                str(gpu_id),
            ]
            log.info("" + " ".join(command[1:]))
            subprocess.run(command, check=True)
            written.append(out)
    return written


def predict_examples(nlp, test_path: Path) -> list:
    """The examples of a test DocBin with nlp's predictions, made as `spacy evaluate` makes them
    (spacy.training.Corpus, then Language.pipe over the tokenizer's docs)."""
    from spacy.training import Corpus

    examples = list(Corpus(test_path)(nlp))
    for example, doc in zip(examples, nlp.pipe([eg.predicted for eg in examples])):
        example.predicted = doc
    return examples


def collect_counts(model: str, test_paths: Sequence[Path], gpu_id: int = -1) -> Dict[str, List[Dict]]:
    """Per-doc counts of one pipeline on each test set: {test name: [doc_counts, ...]}."""
    import spacy

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = spacy.load(model)
    return {path.stem: [doc_counts(eg) for eg in predict_examples(nlp, path)] for path in test_paths}


def load_generative(result_file: Path) -> Dict:
    """A generative evaluation (`fillm_spacy.finetune evaluate --output --predictions`): its
    result JSON, the indices of the test docs it covered, and per-doc counts of its predictions."""
    import spacy
    from spacy.tokens import DocBin
    from spacy.training import Example

    result = json.loads(Path(result_file).read_text())
    if not result.get("predictions"):
        raise ValueError(f"{result_file} has no predictions: run `finetune evaluate` with --predictions")
    test = Path(result["test"])
    if test.suffix != ".spacy":
        raise ValueError(f"{result_file}: compare needs the generative run on a .spacy test file, got {test}")
    lang = result.get("lang", "tl")
    references = read_docs(test, lang)
    # The same records `finetune evaluate` selected, by the same helper.
    indices = select_range(range(len(references)), result.get("range"), result.get("limit"))
    predicted = list(DocBin().from_disk(result["predictions"]).get_docs(spacy.blank(lang).vocab))
    if len(predicted) != len(indices):
        raise ValueError(f"{result_file}: {len(predicted)} predicted docs for {len(indices)} test docs")
    counts = [doc_counts(Example(pred, references[i])) for pred, i in zip(predicted, indices)]
    return {"result": result, "test": test, "indices": indices, "counts": counts}
