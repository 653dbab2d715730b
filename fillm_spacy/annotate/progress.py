"""What the user sees while a job runs and when it ends: a tqdm bar over documents (with words/s
and tqdm's ETA) and a one-line summary with the counts of bad input by reason."""

import sys
import time
from typing import Dict, Optional


class Progress:
    """A tqdm bar over the job's documents; `initial` counts those of shards already done."""

    def __init__(self, total: int, initial: int, enabled: Optional[bool] = None):
        from tqdm import tqdm

        # enabled None: tqdm's own rule, a bar only on a terminal
        self.bar = tqdm(
            total=total,
            initial=initial,
            unit="doc",
            dynamic_ncols=True,
            file=sys.stderr,
            disable=None if enabled is None else not enabled,
            desc="annotate",
        )
        self.words = 0
        self.start = time.perf_counter()

    def update(self, documents: int, words: int) -> None:
        self.words += words
        seconds = max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix_str(f"{self.words / seconds:,.0f} words/s", refresh=False)
        self.bar.update(documents)

    def close(self) -> None:
        self.bar.close()


def counts_text(counts: Dict[str, int]) -> str:
    return ", ".join(f"{reason} {n:,}" for reason, n in sorted(counts.items()) if n)


def summary_line(summary: Dict) -> str:
    """One line: what was written, how fast, what was skipped or repaired and why."""
    parts = [
        f"annotated {summary['documents']:,} documents ({summary['words']:,} words, {summary['sentences']:,} sentences)"
        f" into {summary['shards']:,} {summary['format']} shard(s) in {summary['output_dir']}"
    ]
    if summary.get("resumed_shards"):
        parts.append(f"{summary['resumed_shards']:,} shard(s) were already done")
    if summary.get("run_words"):
        parts.append(
            f"this run {summary['run_words']:,} words in {summary['run_seconds']:.1f} s "
            f"({summary['run_words'] / max(summary['run_seconds'], 1e-9):,.0f} words/s)"
        )
    for label in ("skipped", "repaired", "kept"):
        counts = summary.get(label) or {}
        if any(counts.values()):
            parts.append(f"{label} {sum(counts.values()):,} ({counts_text(counts)})")
    return "; ".join(parts)
