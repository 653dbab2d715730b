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

import argparse
import json
import sys
import time
import unicodedata
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

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


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m fillm_spacy.evaluation.rouge", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", required=True, help='JSONL with {"doc_id", "text", "summary"}')
    parser.add_argument("--range", help="START:END slice of the records (a held-out split)")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--mode", default="abstractive", choices=("lead", "centrality", "abstractive"))
    parser.add_argument("--predictions", help='JSONL {"doc_id", "prediction"} to score instead of running --mode')
    parser.add_argument("--max-sentences", type=int, default=1, help="lead/centrality: sentences per summary")
    parser.add_argument(
        "--model", "--model-name", dest="model", default="gemma3-270m", help="base model of the abstractive mode"
    )
    parser.add_argument("--adapter", help="abstractive: LoRA adapter directory (finetune --task headline)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--max-input-pieces", type=int, default=768)
    parser.add_argument("--chat-format", default="auto")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lang", default="tl")
    parser.add_argument("--output", help="JSON file to write (e.g. metrics/rouge.json)")
    parser.add_argument("--save-predictions", help="JSONL file for the system's predictions")
    args = parser.parse_args(argv)

    import srsly

    records = select_range(read_jsonl(args.data), args.range, args.limit)
    texts = [r["text"] for r in records]
    references = [r["summary"] for r in records]
    started = time.time()
    if args.predictions:
        by_id = {p["doc_id"]: p["prediction"] for p in read_jsonl(args.predictions)}
        missing = [r["doc_id"] for r in records if r["doc_id"] not in by_id]
        if missing:
            raise SystemExit(f"--predictions lacks {len(missing)} doc ids, e.g. {missing[:3]}")
        system_name, system_config = "predictions", {"file": args.predictions}
        predictions = [by_id[r["doc_id"]] for r in records]
    else:
        system_name = args.mode
        system_config = {"mode": args.mode, "batch_size": args.batch_size}
        if args.mode == "abstractive":
            system_config.update(
                model_name=args.model,
                adapter=args.adapter,
                max_new_tokens=args.max_new_tokens,
                max_input_pieces=args.max_input_pieces,
                chat_format=args.chat_format,
            )
        else:
            system_config["max_sentences"] = args.max_sentences
        predictions = summarize(texts, args.lang, system_config)
    system_seconds = time.time() - started
    lead_predictions = summarize(texts, args.lang, {"mode": "lead", "max_sentences": 1})

    system_rows = score_pairs(references, predictions)
    lead_rows = score_pairs(references, lead_predictions)
    result: Dict[str, Any] = {
        "data": str(args.data),
        "range": args.range,
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
    if args.save_predictions:
        srsly.write_jsonl(
            args.save_predictions, [{"doc_id": r["doc_id"], "prediction": p} for r, p in zip(records, predictions)]
        )
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=2, ensure_ascii=False))
    json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
    print()
    return result


if __name__ == "__main__":
    main()
