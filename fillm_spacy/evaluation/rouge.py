"""ROUGE-1/2/L of a summarizer against reference summaries, always beside the lead-1 baseline.

    python -m fillm_spacy.evaluation.rouge --data assets/ntrex-fil-headlines.jsonl --range 52:62 \
        --mode abstractive --output metrics/rouge_abstractive.json

Data: JSONL records {"doc_id", "text", "summary"}. The system is `fillm_summarizer` in the given
mode, or precomputed predictions ({"doc_id", "prediction"} JSONL). Scores are means over
documents of rouge-score's precision/recall/F1, with a paired bootstrap (`stats`) of the mean F1
difference system − lead-1: its 95% interval and p-value.

rouge-score's default tokenizer keeps only [a-z0-9] and so drops every word with a letter such as
"ñ" or "é" partly, and non-Latin scripts entirely; `UnicodeWordTokenizer` keeps them.
"""

import json
import sys
import time
import unicodedata
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import typer

from ..console import fail, run_app, setup_cli_logging
from ..readers.records import read_jsonl, select_range
from .stats import paired_bootstrap_mean

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


class UnicodeWordTokenizer:
    """Lowercased words: maximal runs of Unicode letters, digits and combining marks (so "ñ",
    "é", Devanagari or Thai vowel signs stay inside their word); everything else separates."""

    def tokenize(self, text: str) -> List[str]:
        words: List[str] = []
        current: List[str] = []
        for char in text.lower():
            if char.isalnum() or unicodedata.category(char).startswith("M"):
                current.append(char)
            elif current:
                words.append("".join(current))
                current = []
        if current:
            words.append("".join(current))
        return words


def make_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=False, tokenizer=UnicodeWordTokenizer())


def score_pairs(references: Sequence[str], predictions: Sequence[str]) -> List[Dict[str, Dict[str, float]]]:
    """Per document: {rouge type: {"p", "r", "f"}}."""
    scorer = make_scorer()
    rows = []
    for reference, prediction in zip(references, predictions):
        scores = scorer.score(reference, prediction)
        rows.append({k: {"p": v.precision, "r": v.recall, "f": v.fmeasure} for k, v in scores.items()})
    return rows


def mean_scores(rows: List[Dict[str, Dict[str, float]]]) -> Dict[str, Dict[str, float]]:
    n = max(len(rows), 1)
    return {k: {m: sum(row[k][m] for row in rows) / n for m in ("p", "r", "f")} for k in ROUGE_TYPES}


def summarize(texts: Sequence[str], lang: str, config: Dict[str, Any]) -> List[str]:
    import spacy

    nlp = spacy.blank(lang)
    nlp.add_pipe("fillm_summarizer", config=config)
    return [doc._.summary for doc in nlp.pipe(texts, batch_size=int(config.get("batch_size", 4)))]


app = typer.Typer(add_completion=False, no_args_is_help=True)
MODES = ("lead", "centrality", "abstractive")


@app.command(help=__doc__.split("\n\n")[0])
def rouge(
    data: str = typer.Option(..., help='JSONL with {"doc_id", "text", "summary"}'),
    range_: Optional[str] = typer.Option(None, "--range", help="START:END slice of the records (a held-out split)"),
    limit: Optional[int] = typer.Option(None, help="at most this many records (of the range)"),
    mode: str = typer.Option("abstractive", help=f"the summarizer's mode: {', '.join(MODES)}"),
    predictions_file: Optional[str] = typer.Option(
        None, "--predictions", help='JSONL {"doc_id", "prediction"} to score instead of running --mode'
    ),
    max_sentences: int = typer.Option(1, help="lead/centrality: sentences per summary"),
    model: str = typer.Option(
        "gemma3-270m",
        "--model",
        "--model-name",
        help="base model of the abstractive mode (--model-name: the former name)",
    ),
    adapter: Optional[str] = typer.Option(None, help="abstractive: LoRA adapter directory (finetune --task headline)"),
    max_new_tokens: int = typer.Option(48, help="abstractive: pieces generated at most"),
    max_input_pieces: int = typer.Option(768, help="abstractive: article pieces in the prompt"),
    chat_format: str = typer.Option("auto", help="abstractive: auto, plain, seallm or tokenizer"),
    batch_size: int = typer.Option(4, help="documents per batch"),
    lang: str = typer.Option("tl", help="language of the blank pipeline"),
    output: Optional[str] = typer.Option(None, help="JSON file to write (e.g. metrics/rouge.json)"),
    save_predictions: Optional[str] = typer.Option(None, help="JSONL file for the system's predictions"),
) -> Dict[str, Any]:
    if mode not in MODES:
        fail(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    import srsly

    records = select_range(read_jsonl(data), range_, limit)
    texts = [r["text"] for r in records]
    references = [r["summary"] for r in records]
    started = time.time()
    if predictions_file:
        by_id = {p["doc_id"]: p["prediction"] for p in read_jsonl(predictions_file)}
        missing = [r["doc_id"] for r in records if r["doc_id"] not in by_id]
        if missing:
            fail(f"--predictions lacks {len(missing)} doc ids, e.g. {missing[:3]}", code=1)
        system_name, system_config = "predictions", {"file": predictions_file}
        predictions = [by_id[r["doc_id"]] for r in records]
    else:
        system_name = mode
        system_config = {"mode": mode, "batch_size": batch_size}
        if mode == "abstractive":
            system_config.update(
                model_name=model,
                adapter=adapter,
                max_new_tokens=max_new_tokens,
                max_input_pieces=max_input_pieces,
                chat_format=chat_format,
            )
        else:
            system_config["max_sentences"] = max_sentences
        predictions = summarize(texts, lang, system_config)
    system_seconds = time.time() - started
    lead_predictions = summarize(texts, lang, {"mode": "lead", "max_sentences": 1})

    system_rows = score_pairs(references, predictions)
    lead_rows = score_pairs(references, lead_predictions)
    result: Dict[str, Any] = {
        "data": str(data),
        "range": range_,
        "n_docs": len(records),
        "tokenizer": "UnicodeWordTokenizer (lowercased Unicode letter/digit/mark runs), no stemming",
        "system": {
            "name": system_name,
            "config": system_config,
            **mean_scores(system_rows),
            "seconds": round(system_seconds, 1),
            "empty_predictions": sum(1 for p in predictions if not p.strip()),
        },
        "lead1": {"name": "lead-1", **mean_scores(lead_rows)},
        "difference_f": {
            k: asdict(paired_bootstrap_mean([r[k]["f"] for r in system_rows], [r[k]["f"] for r in lead_rows]))
            for k in ROUGE_TYPES
        },
        "examples": [
            {"doc_id": r["doc_id"], "reference": ref, "system": p, "lead1": lead}
            for r, ref, p, lead in list(zip(records, references, predictions, lead_predictions))[:3]
        ],
    }
    if save_predictions:
        srsly.write_jsonl(
            save_predictions, [{"doc_id": r["doc_id"], "prediction": p} for r, p in zip(records, predictions)]
        )
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(result, indent=2, ensure_ascii=False))
    json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
    print()
    return result


def main(argv: Optional[Sequence[str]] = None) -> Optional[Dict[str, Any]]:
    """The command line; from Python, returns the result it printed."""
    setup_cli_logging()
    return run_app(app, argv, prog_name="python -m fillm_spacy.evaluation.rouge")


if __name__ == "__main__":
    main()
