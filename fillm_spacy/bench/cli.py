"""`python -m fillm_spacy.bench`: the command line; every measurement runs in a fresh subprocess.

    python -m fillm_spacy.bench pipe --pipeline training/tl_fillm_sm/model-best --pipeline training/baseline/model
    python -m fillm_spacy.bench train --config configs/tl_fillm_sm.cfg --train corpus/ud/train.spacy
    python -m fillm_spacy.bench encoder --model gemma3-270m
    python -m fillm_spacy.bench accuracy --pipeline training/tl_fillm_sm/model-best --dev corpus/ud/dev.spacy
    python -m fillm_spacy.bench scale --preset seallm-7b-v2.5 --device cuda --dtype bfloat16
    python -m fillm_spacy.bench annotate --pipeline tl_fillm_sm --texts assets/raw/alt-fil-wikinews.txt
    python -m fillm_spacy.bench profile --pipeline training/tl_fillm_sm/model-best --texts assets/raw/alt-fil-wikinews.txt


Each measurement runs in its own interpreter, so each peak RSS is that of one pipeline loaded once.
"""

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import typer

from ..console import fail, run_app, setup_cli_logging
from ..readers.raw_text import first_lines
from .annotate import run_annotate_bench
from .measure import (
    ACCURACY_KEYS,
    measure_accuracy,
    measure_encoder,
    measure_pipe,
    measure_train,
    measure_warm_load,
)
from .profile import measure_profile

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
log = logging.getLogger("fillm_spacy.bench")
PROG = "python -m fillm_spacy.bench"
TEXTS = "assets/raw/alt-fil-wikinews.txt"
PRECISIONS = ("auto", "float32", "bfloat16")
# `--inline`: run the measurement in this process (what in_subprocess asks of the child).
INLINE = typer.Option(False, "--inline", hidden=True)


def in_subprocess(args: List[str]) -> Dict:
    """Run one measurement in a fresh interpreter (its own peak RSS) and parse its JSON."""
    result = subprocess.run(
        [sys.executable, "-m", "fillm_spacy.bench", *args, "--inline"], capture_output=True, text=True
    )
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-5:] or ["failed"], "args": args}
    return json.loads(result.stdout.strip().splitlines()[-1])


def emit(result: Dict) -> Dict:
    """The result as one JSON line on stdout (what in_subprocess and callers parse)."""
    import torch

    result["machine"] = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    print(json.dumps(result))
    return result


def checked_precision(precision: Optional[str]) -> Optional[str]:
    if precision is not None and precision not in PRECISIONS:
        fail(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return precision


def run_scale(
    preset: str,
    texts: str,
    lines: int,
    tokenizer: Optional[str],
    device: str,
    dtype: str,
    training: Optional[List[str]],
    last_layer: Optional[List[int]],
    words_per_batch: int,
    steps: int,
    inline: bool,
) -> Dict:
    """Each (training, last_layer) in its own process, so each peak memory is its own."""
    from .scale import measure_scale

    if inline:
        return measure_scale(
            preset,
            first_lines(Path(texts), lines),
            tokenizer,
            device,
            dtype,
            training[0],
            last_layer[0] if last_layer else None,
            words_per_batch,
            steps,
            inference=True,
        )
    common = [
        "--preset",
        preset,
        "--texts",
        texts,
        "--lines",
        str(lines),
        "--device",
        device,
        "--dtype",
        dtype,
        "--words-per-batch",
        str(words_per_batch),
        "--steps",
        str(steps),
    ]
    if tokenizer:
        common += ["--tokenizer", tokenizer]
    runs = []
    for layer in last_layer or [0]:
        for kind in training or ["lora", "full"]:
            layer_args = ["--last-layer", str(layer)] if layer else []
            runs.append(in_subprocess(["scale", "--training", kind, *layer_args, *common]))
            log.info(json.dumps(runs[-1]))  # progress, in case a later run dies
    return {"runs": runs}


@app.command()
def pipe(
    pipeline: List[str] = typer.Option(..., help="pipeline dir (repeat; the first is tl_fillm)"),
    texts: str = typer.Option(TEXTS, help="raw text, one document a line"),
    lines: int = typer.Option(500, help="the first N non-empty lines are annotated"),
    batch_size: Optional[int] = typer.Option(None, help="nlp.pipe batch size (default: each pipeline's own)"),
    n_process: int = typer.Option(1, help="nlp.pipe processes"),
    int8: bool = typer.Option(False, "--int8", help="also measure int8 dynamic quantization of the LLM"),
    precision: Optional[str] = typer.Option(
        None,
        help=f"{', '.join(PRECISIONS)}: what the LLM layers compute in (default: each pipeline's own setting)",
    ),
    compiled: bool = typer.Option(False, "--compiled", help="run the LLM layers torch.compile'd"),
    cold_cache: bool = typer.Option(False, "--cold-cache", help="also time a load with an empty model cache"),
    warm_load: bool = typer.Option(False, "--warm-load", hidden=True),  # the second-load measurement
    inline: bool = INLINE,
) -> Dict:
    """nlp.pipe words/s, load time, peak RSS, saved size per pipeline."""
    precision = checked_precision(precision)
    if inline and warm_load:
        return emit(measure_warm_load(pipeline[0]))
    if inline:
        return emit(measure_pipe(pipeline[0], texts, lines, batch_size, n_process, int8, precision, compiled or None))
    common = ["--texts", texts, "--lines", str(lines), "--n-process", str(n_process)]
    if precision:
        common += ["--precision", precision]
    if compiled:
        common += ["--compiled"]
    if batch_size:
        common += ["--batch-size", str(batch_size)]
    runs = [in_subprocess(["pipe", "--pipeline", p, *common]) for p in pipeline]
    for run, path in zip(runs, pipeline):  # measured apart: two loads must not count in peak RSS
        warm = in_subprocess(["pipe", "--pipeline", path, "--warm-load"])
        run["load_seconds_base_model_in_memory"] = warm.get("load_seconds_base_model_in_memory", warm.get("error"))
    if int8:
        runs.append(in_subprocess(["pipe", "--pipeline", pipeline[0], "--int8", *common]))
    result = {"runs": runs}
    if len(runs) > 1 and all("words_per_second" in r for r in runs[:2]):
        result["words_per_second_ratio_first_to_second"] = round(
            runs[0]["words_per_second"] / runs[1]["words_per_second"], 3
        )
    if cold_cache:
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            env = {**os.environ, "FILLM_CACHE": cache}
            subprocess.run(
                [sys.executable, "-c", f"import spacy; spacy.load({pipeline[0]!r})"],
                env=env,
                check=True,
                capture_output=True,
            )
            result["load_seconds_cold_cache"] = round(time.perf_counter() - start, 1)
    return emit(result)


@app.command()
def train(
    config: str = typer.Option("configs/tl_fillm_sm.cfg", help="the training config"),
    train_path: str = typer.Option("corpus/ud/train.spacy", "--train", help="paths.train"),
    dev: str = typer.Option("corpus/ud/dev.spacy", help="paths.dev"),
    steps: int = typer.Option(20, help="training steps timed"),
    vectors: str = typer.Option("vectors/floret-tl", help="paths.vectors (the config's static vectors); '' for none"),
    overrides: List[str] = typer.Option([], "--set", help="config override key=value (repeat)"),
    inline: bool = INLINE,
) -> Dict:
    """Seconds per 1,000 training words and peak RSS."""
    if inline:
        settings = {"paths.vectors": vectors or None, **dict(item.split("=", 1) for item in overrides)}
        return emit(measure_train(config, train_path, dev, steps, settings))
    return emit(
        in_subprocess(
            [
                "train",
                "--config",
                config,
                "--train",
                train_path,
                "--dev",
                dev,
                "--steps",
                str(steps),
                "--vectors",
                vectors,
                *[part for s in overrides for part in ("--set", s)],
            ]
        )
    )


@app.command()
def encoder(
    model: str = typer.Option("gemma3-270m", help="base model: alias, local directory or cached hub name"),
    texts: str = typer.Option(TEXTS, help="raw text, one document a line"),
    lines: int = typer.Option(60, help="the first N non-empty lines are encoded"),
    last_layer: int = typer.Option(6, help="decoder layers run"),
    lora_r: int = typer.Option(16, help="LoRA rank of the training measurement"),
    inline: bool = INLINE,
) -> Dict:
    """Encoder pieces/s, forward and LoRA training."""
    if inline:
        return emit(measure_encoder(model, texts, lines, last_layer, lora_r))
    return emit(
        in_subprocess(
            [
                "encoder",
                "--model",
                model,
                "--texts",
                texts,
                "--lines",
                str(lines),
                "--last-layer",
                str(last_layer),
                "--lora-r",
                str(lora_r),
            ]
        )
    )


@app.command()
def accuracy(
    pipeline: str = typer.Option(..., help="pipeline dir"),
    dev: str = typer.Option("corpus/ud/dev.spacy", help="gold DocBin scored"),
    int8: bool = typer.Option(False, "--int8", hidden=True),
    inline: bool = INLINE,
) -> Dict:
    """Accuracy cost of the speed options (int8) on a dev set."""
    if inline:
        return emit(measure_accuracy(pipeline, dev, int8))
    common = ["accuracy", "--pipeline", pipeline, "--dev", dev]
    runs = [in_subprocess(common), in_subprocess([*common, "--int8"])]
    result = {"runs": runs}
    if all("error" not in r for r in runs):
        result["int8_minus_float"] = {
            k: round(runs[1][k] - runs[0][k], 2) for k in ACCURACY_KEYS if k in runs[0] and k in runs[1]
        }
    return emit(result)


@app.command()
def scale(
    preset: str = typer.Option("seallm-7b-v2.5", help="seallm-7b-v2.5 or tiny"),
    texts: str = typer.Option(TEXTS, help="raw text, one document a line"),
    lines: int = typer.Option(1000, help="the first N non-empty lines are read"),
    tokenizer: Optional[str] = typer.Option(
        None, help="a tokenizer.json (e.g. Gemma's); default: a small BPE trained on the texts"
    ),
    device: str = typer.Option("cuda", help="torch device"),
    dtype: str = typer.Option("bfloat16", help="torch dtype of the weights"),
    training: Optional[List[str]] = typer.Option(None, help="lora and/or full (repeat; default both)"),
    last_layer: Optional[List[int]] = typer.Option(None, help="layers run (repeat; default all)"),
    words_per_batch: int = typer.Option(1000, help="words per training batch"),
    steps: int = typer.Option(8, help="training steps timed"),
    inline: bool = INLINE,
) -> Dict:
    """Random-weight model of a given shape (SeaLLM-7B-v2.5): LoRA vs full fine-tuning and inference, on GPU."""
    return emit(
        run_scale(preset, texts, lines, tokenizer, device, dtype, training, last_layer, words_per_batch, steps, inline)
    )


@app.command()
def profile(
    pipeline: str = typer.Option(..., help="pipeline dir"),
    texts: str = typer.Option(TEXTS, help="raw text, one document a line"),
    lines: int = typer.Option(500, help="the first N non-empty lines are annotated"),
    precision: Optional[str] = typer.Option(
        None, help=f"{', '.join(PRECISIONS)}: what the LLM layers compute in (default: the pipeline's own setting)"
    ),
    matmul_size: int = typer.Option(2048, help="side of the square matmul that measures the peak"),
    inline: bool = INLINE,
) -> Dict:
    """Seconds per component, the LLM layers' pieces, FLOPs and GFLOP/s against the measured matmul peak."""
    precision = checked_precision(precision)
    if inline:
        return emit(measure_profile(pipeline, texts, lines, precision, matmul_size))
    return emit(
        in_subprocess(
            [
                "profile",
                "--pipeline",
                pipeline,
                "--texts",
                texts,
                "--lines",
                str(lines),
                "--matmul-size",
                str(matmul_size),
                *(["--precision", precision] if precision else []),
            ]
        )
    )


@app.command()
def annotate(
    pipeline: str = typer.Option("tl_fillm_sm", help="pipeline package or directory"),
    texts: str = typer.Option(TEXTS, help="raw text, one document a line"),
    lines: int = typer.Option(500, help="the first N non-empty lines are annotated"),
    engine: Optional[List[str]] = typer.Option(None, help="local or ray (repeat; default both)"),
    workers: Optional[List[int]] = typer.Option(None, help="processes or actors (repeat; default 1 and 2)"),
    shard_size: int = typer.Option(50, help="documents per shard"),
    batch_size: Optional[int] = typer.Option(None, help="nlp.pipe batch size (default: the pipeline's)"),
    address: Optional[str] = typer.Option(None, help="an existing Ray cluster; default: a local one"),
) -> Dict:
    """Corpus annotator words/s: local engine and Ray, 1 and 2 workers, scaling ratios."""
    unknown = [e for e in engine or [] if e not in ("local", "ray")]
    if unknown:
        fail(f"--engine must be local or ray, not {unknown[0]!r}")
    return emit(
        run_annotate_bench(
            pipeline, texts, lines, engine or ["local", "ray"], workers or [1, 2], shard_size, batch_size, address
        )
    )


def main(argv: Optional[List[str]] = None) -> Optional[Dict]:
    """The command line; from Python, returns the JSON it printed."""
    setup_cli_logging()
    return run_app(app, argv, prog_name=PROG)
