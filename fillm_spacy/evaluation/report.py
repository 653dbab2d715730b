"""The compare report: one (system, baseline) pair on one test set as a JSON-able result (both
corpus scores, the paired bootstrap and t-test of every metric, spaCy's speed, the published
numbers), its markdown table, and `report`, which builds them for every test set and every
generative run.

The t-test is on per-sentence scores: a sentence with nothing to score for an F or accuracy (no
gold and no predicted items, e.g. no entities and none predicted) scores 1.0, there was nothing to
get wrong and nothing was got wrong; a sentence whose precision or recall is undefined (nothing
predicted / nothing to find) is left out of that metric's t-test. Corpus scores (the table's
values and the bootstrap) keep spaCy's convention (0.0), so they equal `spacy evaluate`'s.
Per-sentence means weight sentences equally and corpus scores weight tokens or entities equally,
so the two tests can disagree, even in sign.
"""

import json
import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .counts import METRICS, counts_array
from .published import published_for, published_scores
from .runner import collect_counts, find_test_sets, load_generative
from .stats import paired_bootstrap, paired_t_test, per_item_scores

log = logging.getLogger("fillm_spacy.compare")

# The metrics each generative task is scored on (fillm_spacy.finetune evaluate).
GENERATIVE_METRICS = {"pos": ("pos_acc",), "ner": ("ents_p", "ents_r", "ents_f")}


def compare_test_set(
    test_name: str,
    system: Tuple[str, List[Dict]],
    baseline: Tuple[str, List[Dict]],
    spacy_scores: Dict[str, Optional[Dict]],
    *,
    n_resamples: int,
    seed: int,
    confidence: float,
    metrics: Sequence[str] = (),
) -> Dict:
    """All metrics (or the named ones) of one test set for one (system, baseline) pair, as a
    JSON-able dict."""
    (sys_name, sys_docs), (base_name, base_docs) = system, baseline
    if len(sys_docs) != len(base_docs):
        raise ValueError(f"{test_name}: {len(sys_docs)} vs {len(base_docs)} docs")
    rows, warnings = [], []
    for metric in METRICS:
        if metrics and metric.key not in metrics:
            continue
        mask = [a[metric.counter] is not None and b[metric.counter] is not None for a, b in zip(sys_docs, base_docs)]
        counts_a = counts_array(sys_docs, metric.counter, mask)
        counts_b = counts_array(base_docs, metric.counter, mask)
        # Nothing to score (e.g. UPOS on a NER-only test set): spaCy reports None; skip the row.
        if len(counts_a) == 0 or (counts_a.sum() == 0 and counts_b.sum() == 0):
            continue
        boot = paired_bootstrap(
            counts_a, counts_b, metric.kind, n_resamples=n_resamples, seed=seed, confidence=confidence
        )
        ttest = paired_t_test(
            per_item_scores(counts_a, metric.kind), per_item_scores(counts_b, metric.kind), confidence=confidence
        )
        for name, ours in ((sys_name, boot.score_a), (base_name, boot.score_b)):
            reported = (spacy_scores.get(name) or {}).get(metric.key)
            if reported is not None and abs(reported - ours) > 1e-6:
                warnings.append(f"{name} {metric.key}: spacy evaluate {reported:.6f}, per-sentence counts {ours:.6f}")
        rows.append({"metric": metric.key, "label": metric.label, "bootstrap": asdict(boot), "t_test": asdict(ttest)})
    speeds = {name: (spacy_scores.get(name) or {}).get("speed") for name in (sys_name, base_name)}
    return {
        "test_set": test_name,
        "n_docs": len(sys_docs),
        "system": sys_name,
        "baseline": base_name,
        "rows": rows,
        "speed": speeds,
        "published": published_for(test_name),
        "warnings": warnings,
    }


def _pct(value: Optional[float]) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def _signed(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:+.2f}"


def _p(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def render_markdown(results: List[Dict], *, n_resamples: int, seed: int, confidence: float) -> str:
    level = f"{100 * confidence:g}%"
    published = published_scores()
    lines = [
        "# tl_fillm vs the calamanCy-style baseline",
        "",
        "Scores in % (speed in words/s, from `spacy evaluate`). Δ = system − baseline. Paired tests over "
        f"test sentences (one per doc): bootstrap with {n_resamples} resamples (seed {seed}), {level} percentile "
        "CI of the corpus-level Δ and two-sided p; scipy's paired t-test on per-sentence scores, "
        f"{level} t interval of the mean per-sentence Δ. n = sentences scored for that metric.",
        "",
        f"The last column is **published**, not measured here: {published['source']}. Those models were "
        "trained on the full UD-NewsCrawl train split and TLUnified-NER, and evaluated on the named test set, "
        "which may differ from the one in the row (marked †). n/a: no published number.",
        "",
    ]
    for result in results:
        on_test_set = result["published"]
        if on_test_set is None:
            pub_header, pub_scores = f"published {published['label']} (none for this test set)", {}
        else:
            mark = "" if on_test_set["same_split"] else " †"
            pub_header = f"published {published['label']} ({on_test_set['dataset']}{mark})"
            pub_scores = on_test_set["scores"]
        sys_name, base_name = result["system"], result["baseline"]
        lines += [
            f"## {result['test_set']}: {sys_name} vs {base_name} ({result['n_docs']} docs)",
            "",
            f"| metric | {sys_name} | {base_name} | Δ | bootstrap {level} CI | bootstrap p | "
            f"t-test mean Δ | t-test {level} CI | t-test p | n | {pub_header} |",
            "|---|---:|---:|---:|---|---:|---:|---|---:|---:|---:|",
        ]
        for row in result["rows"]:
            boot, tt = row["bootstrap"], row["t_test"]
            lines.append(
                f"| {row['label']} (`{row['metric']}`) | {_pct(boot['score_a'])} | {_pct(boot['score_b'])} | "
                f"{_signed(boot['delta'])} | [{_signed(boot['ci_low'])}, {_signed(boot['ci_high'])}] | "
                f"{_p(boot['p_value'])} | {_signed(tt['mean_delta'])} | "
                f"[{_signed(tt['ci_low'])}, {_signed(tt['ci_high'])}] | {_p(tt['p_value'])} | {tt['n_items']} | "
                f"{_pct(pub_scores.get(row['metric']))} |"
            )
        speed_a, speed_b = result["speed"][sys_name], result["speed"][base_name]
        fmt = lambda s: "n/a" if s is None else f"{s:,.0f}"  # noqa: E731
        lines.append(f"| Speed (words/s, `speed`) | {fmt(speed_a)} | {fmt(speed_b)} | | | | | | | | n/a |")
        notes = []
        if on_test_set is not None and on_test_set.get("note"):
            notes.append(f"Published: {on_test_set['note']}.")
        if on_test_set is not None and not on_test_set["same_split"]:
            notes.append(f"† The published column is on {on_test_set['dataset']}, not on these sentences.")
        notes += [f"Warning: {w}" for w in result["warnings"]]
        lines += [""] + [f"{note}  " for note in notes] + ([""] if notes else [])
    return "\n".join(lines).rstrip() + "\n"


def report(
    systems: Sequence[Tuple[str, str]],
    baselines: Sequence[Tuple[str, str]],
    test_dir: Path,
    metrics_dir: Path,
    output: Path,
    json_output: Optional[Path] = None,
    *,
    generative: Sequence[Tuple[str, str]] = (),
    n_resamples: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
    gpu_id: int = -1,
) -> List[Dict]:
    """The table of each system (e.g. tl_fillm_sm, tl_fillm_lg) vs each baseline on every test set
    in test_dir; then each generative evaluation (NAME=result.json) vs the same pipelines on the
    docs it covered."""
    test_paths = find_test_sets(test_dir)
    generated = {name: load_generative(Path(path)) for name, path in generative}
    # A generative run may be on a file outside test_dir (e.g. the dev split): score that too.
    extra_paths = sorted({g["test"] for g in generated.values()} - set(test_paths), key=str)
    pipelines = [*systems, *baselines]
    counts = {name: collect_counts(model, [*test_paths, *extra_paths], gpu_id) for name, model in pipelines}
    results = []
    for path in test_paths:
        spacy_scores = {}
        for name, _ in pipelines:
            metrics_file = metrics_dir / name / f"{path.stem}.json"
            spacy_scores[name] = json.loads(metrics_file.read_text()) if metrics_file.exists() else None
        for sys_name, _ in systems:
            for base_name, _ in baselines:
                results.append(
                    compare_test_set(
                        path.stem,
                        (sys_name, counts[sys_name][path.stem]),
                        (base_name, counts[base_name][path.stem]),
                        spacy_scores,
                        n_resamples=n_resamples,
                        seed=seed,
                        confidence=confidence,
                    )
                )
    for gen_name, gen in generated.items():
        task = gen["result"]["task"]
        span = gen["result"].get("range") or "all"
        test_name = f"{gen['test'].stem} docs {span}" + (
            f" (first {gen['result']['limit']})" if gen["result"].get("limit") else ""
        )
        for name, _ in pipelines:
            pipeline_counts = counts[name][gen["test"].stem]
            results.append(
                compare_test_set(
                    f"{test_name}, generative",
                    (gen_name, gen["counts"]),
                    (name, [pipeline_counts[i] for i in gen["indices"]]),
                    {},
                    n_resamples=n_resamples,
                    seed=seed,
                    confidence=confidence,
                    metrics=GENERATIVE_METRICS[task],
                )
            )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_markdown(results, n_resamples=n_resamples, seed=seed, confidence=confidence))
    log.info(f"wrote {output}")
    if json_output is not None:
        json_output.write_text(json.dumps(results, indent=2))
        log.info(f"wrote {json_output}")
    return results
