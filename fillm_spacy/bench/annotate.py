"""`python -m fillm_spacy.bench annotate`: words/s of the corpus annotator (fillm_spacy.annotate)
for each engine and number of workers (local processes, Ray actors), and the scaling ratios.

Words/s is this run's words over the time from the first shard's start to the last shard's end,
so model loading and Ray start-up are left out (they are reported apart, as wall seconds). Every
configuration annotates the same first `lines` lines of the text into a fresh output directory.
"""

import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

from ..annotate.errors import AnnotateError
from ..readers.raw_text import first_lines


def measure_annotate(
    pipeline: str,
    texts: List[str],
    engine: str,
    workers: int,
    shard_size: int,
    batch_size: Optional[int],
    address: Optional[str],
) -> Dict:
    from ..annotate import annotate

    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "texts.txt"
        source.write_text("".join(text + "\n" for text in texts), encoding="utf8")
        start = time.perf_counter()
        summary = annotate(
            pipeline,
            str(source),
            str(Path(folder) / "out"),
            engine=engine,
            n_process=workers,
            shard_size=shard_size,
            batch_size=batch_size,
            address=address,
            progress=False,
        )
        wall = time.perf_counter() - start
    seconds = summary["run_seconds"]
    return {
        "engine": engine,
        "workers": workers,
        "documents": summary["run_documents"],
        "words": summary["run_words"],
        "shards": summary["shards"],
        "seconds": round(seconds, 2),
        "words_per_second": round(summary["run_words"] / seconds, 1) if seconds else None,
        "wall_seconds_with_loading": round(wall, 2),
    }


def scaling_ratios(runs: List[Dict]) -> Dict[str, float]:
    """Per engine, each worker count's words/s over the fewest workers'; and each engine's
    fewest-workers words/s over the local engine's."""
    best = {(r["engine"], r["workers"]): r["words_per_second"] for r in runs if r.get("words_per_second")}
    ratios = {}
    for engine in sorted({e for e, _ in best}):
        counts = sorted(w for e, w in best if e == engine)
        for workers in counts[1:]:
            ratios[f"{engine}_{workers}_over_{counts[0]}"] = round(best[engine, workers] / best[engine, counts[0]], 3)
    local = min((w for e, w in best if e == "local"), default=None)
    for engine in sorted({e for e, _ in best} - {"local"}):
        fewest = min(w for e, w in best if e == engine)
        if local is not None:
            ratios[f"{engine}_{fewest}_over_local_{local}"] = round(best[engine, fewest] / best["local", local], 3)
    return ratios


def run_annotate_bench(
    pipeline: str,
    texts_path: str,
    lines: int,
    engines: List[str],
    workers: List[int],
    shard_size: int,
    batch_size: Optional[int],
    address: Optional[str],
) -> Dict:
    """Every engine with every number of workers on the first `lines` lines of `texts_path`."""
    texts = first_lines(Path(texts_path), lines)
    runs = []
    started_ray = False
    if "ray" in engines:  # one cluster for every Ray configuration: its start-up is not measured
        from ..annotate.ray_engine import connect, import_ray

        ray = import_ray()
        started_ray = connect(ray, address)
    try:
        for engine in engines:
            for count in workers:
                try:
                    runs.append(
                        measure_annotate(
                            pipeline, texts, engine, count, shard_size, batch_size, address if engine == "ray" else None
                        )
                    )
                except AnnotateError as error:  # the other configurations still run
                    runs.append({"engine": engine, "workers": count, "error": str(error)})
    finally:
        if started_ray:
            ray.shutdown()
    return {
        "pipeline": pipeline,
        "texts": texts_path,
        "lines": len(texts),
        "shard_size": shard_size,
        "runs": runs,
        "ratios": scaling_ratios(runs),
    }
