"""`python -m fillm_spacy.bench profile`: where a pipeline's CPU time goes, and how close its LLM
layers run to the machine's measured matmul peak (so whether fewer FLOPs or cheaper FLOPs would help).

Run in a fresh interpreter (see cli.in_subprocess), like every measurement in measure.py.

FLOP estimate of the LLM layers (multiply-add = 2 FLOPs), per decoder layer actually run:

    linear    = 2 * P per piece, with P the weights of the layer's linear projections
                P = hidden * (heads + 2 * kv_heads) * head_dim     (q, k, v)
                  + heads * head_dim * hidden                       (o)
                  + 3 * hidden * intermediate                       (gate, up, down)
    attention = 4 * L * heads * head_dim per piece of a window of L pieces
                (scores Q K^T: 2 * L * heads * head_dim; weighted values: the same again; the full
                L x L, as the masked kernels compute it, causal or not)

so a window of L pieces through n layers costs n * (2 * P * L + 4 * L**2 * heads * head_dim).
hidden_size, num_attention_heads, head_dim, num_key_value_heads and intermediate_size come from the
base model's config; n is the number of layers each forward pass ran (module.last_layer at
inference). Embedding look-ups, norms, rotary embeddings, softmax and LoRA's low-rank products are
left out (a few percent at most). "flops" counts the windows' own pieces; "flops_with_padding"
counts what the length-grouped forward passes computed (windows right-padded to the longest of
their group), the work the hardware actually did.
"""

import contextlib
import time
from pathlib import Path
from typing import Dict, List, Optional

from ..readers.raw_text import first_lines
from .measure import encoder_precision, machine


def linear_parameters_per_layer(config) -> int:
    """P above: the weights of one decoder layer's q, k, v, o and gated-MLP projections."""
    hidden, heads = config.hidden_size, config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    attention = hidden * (heads + 2 * kv_heads) * head_dim + heads * head_dim * hidden
    return attention + 3 * hidden * config.intermediate_size


def window_flops(config, length: int, n_layers: int) -> int:
    """FLOPs of one window of `length` pieces through `n_layers` decoder layers (module doc)."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    per_layer = 2 * linear_parameters_per_layer(config) * length + 4 * length**2 * heads * head_dim
    return n_layers * per_layer


class LayerRecorder:
    """Wraps one LLMEncoderModule's `run_layers` (on the instance): the seconds spent inside it,
    the window lengths and layers of every forward pass, and the pipe that was running."""

    def __init__(self, module):
        self.module = module
        self.config = module.llm.config
        self.recording = False
        self.pipe_name: Optional[str] = None
        self.seconds = 0.0
        self.seconds_by_pipe: Dict[str, float] = {}
        self.pieces = self.padded_pieces = self.windows = self.forward_passes = 0
        self.flops = self.flops_with_padding = 0
        self.layers_run = set()

    def run_layers(self, start, stop, mask, *args, **kwargs):
        if not self.recording:
            return type(self.module).run_layers(self.module, start, stop, mask, *args, **kwargs)
        import torch

        cuda = mask.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(mask.device)
        began = time.perf_counter()
        outputs = type(self.module).run_layers(self.module, start, stop, mask, *args, **kwargs)
        if cuda:
            torch.cuda.synchronize(mask.device)
        seconds = time.perf_counter() - began
        self.seconds += seconds
        self.seconds_by_pipe[self.pipe_name] = self.seconds_by_pipe.get(self.pipe_name, 0.0) + seconds
        n_layers = stop - start
        lengths = [int(n) for n in mask.sum(dim=1).tolist()]
        self.layers_run.add(n_layers)
        self.forward_passes += 1
        self.windows += len(lengths)
        self.pieces += sum(lengths)
        self.padded_pieces += mask.numel()
        self.flops += sum(window_flops(self.config, n, n_layers) for n in lengths)
        self.flops_with_padding += len(lengths) * window_flops(self.config, mask.shape[1], n_layers)
        return outputs

    @contextlib.contextmanager
    def installed(self):
        self.module.run_layers = self.run_layers  # an instance attribute shadows the method
        try:
            yield self
        finally:
            del self.module.run_layers


def matmul_peak(dtype, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of the best of `repeats` size x size matmuls in `dtype` (after one warm-up), with
    torch's current thread count: the measured peak that the LLM layers are compared with."""
    import torch

    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - began)
    return 2 * size**3 / best / 1e9


def measure_profile(
    pipeline: str, texts_path: str, n_lines: int, precision: Optional[str] = None, matmul_size: int = 2048
) -> Dict:
    """Per-component seconds of one loaded pipeline over `n_lines` texts, and the LLM layers'
    pieces, FLOPs (module doc), seconds and achieved GFLOP/s against the measured matmul peak.

    precision None: the pipeline's own setting (see fillm_spacy.load). "llm" is None for a
    pipeline without an LLM encoder.
    """
    import torch

    from .. import load
    from ..layers.precision import inference_dtype
    from ..pipeline.quantize import llm_encoder_modules

    texts = first_lines(Path(texts_path), n_lines)
    nlp = load(pipeline, precision=precision)
    modules = list({id(m): m for m in llm_encoder_modules(nlp)}.values())
    recorders = [LayerRecorder(m) for m in modules]
    with contextlib.ExitStack() as stack:
        for recorder in recorders:
            stack.enter_context(recorder.installed())
        list(nlp.pipe(texts[:8], batch_size=nlp.batch_size))  # first-call costs out of the timing
        for recorder in recorders:
            recorder.recording = True
        began = time.perf_counter()
        docs = [nlp.make_doc(text) for text in texts]
        component_seconds = {"make_doc": time.perf_counter() - began}
        for name, proc in nlp.pipeline:
            for recorder in recorders:
                recorder.pipe_name = name
            start = time.perf_counter()
            if hasattr(proc, "pipe"):
                docs = list(proc.pipe(docs, batch_size=nlp.batch_size))
            else:
                docs = [proc(doc) for doc in docs]
            component_seconds[name] = time.perf_counter() - start
        total = time.perf_counter() - began
        for recorder in recorders:
            recorder.recording = False
    n_words = sum(len(doc) for doc in docs)

    peaks = {"float32": matmul_peak(torch.float32, matmul_size), "bfloat16": matmul_peak(torch.bfloat16, matmul_size)}
    components = {}
    for name, seconds in component_seconds.items():
        entry = {"seconds": round(seconds, 4), "share": round(seconds / total, 4)}
        llm_seconds = sum(r.seconds_by_pipe.get(name, 0.0) for r in recorders)
        if llm_seconds:
            entry["llm_layers_seconds"] = round(llm_seconds, 4)
            entry["rest_seconds"] = round(seconds - llm_seconds, 4)
        components[name] = entry
    return {
        "pipeline": pipeline,
        "precision": encoder_precision(nlp, False),
        **machine(),
        "batch_size": nlp.batch_size,
        "texts": len(texts),
        "words": n_words,
        "total_seconds": round(total, 4),
        "words_per_second": round(n_words / total, 1),
        "components": components,
        "matmul_peak_gflop_per_second": {
            "size": matmul_size,
            **{dtype: round(value, 1) for dtype, value in peaks.items()},
        },
        "llm": llm_summary(recorders, peaks, n_words, inference_dtype) if recorders else None,
    }


def llm_summary(recorders: List[LayerRecorder], peaks: Dict[str, float], n_words: int, inference_dtype) -> Dict:
    """The recorders' totals, and each encoder's own figures when there are several."""
    import torch

    encoders = []
    for recorder in recorders:
        module = recorder.module
        device = next(module.llm.decoder.parameters()).device
        dtype = "bfloat16" if inference_dtype(module.precision, device) == torch.bfloat16 else "float32"
        config = recorder.config
        encoders.append(
            {
                "computes_in": dtype,
                "layers_run": max(recorder.layers_run, default=module.last_layer),
                "config": {
                    key: getattr(config, key, None)
                    for key in (
                        "hidden_size",
                        "intermediate_size",
                        "num_attention_heads",
                        "num_key_value_heads",
                        "head_dim",
                    )
                },
                "linear_parameters_per_layer": linear_parameters_per_layer(config),
                "seconds": recorder.seconds,
                "pieces": recorder.pieces,
                "padded_pieces": recorder.padded_pieces,
                "windows": recorder.windows,
                "forward_passes": recorder.forward_passes,
                "flops": recorder.flops,
                "flops_with_padding": recorder.flops_with_padding,
            }
        )
    seconds = sum(e["seconds"] for e in encoders)
    pieces = sum(e["pieces"] for e in encoders)
    flops = sum(e["flops"] for e in encoders)
    padded_flops = sum(e["flops_with_padding"] for e in encoders)
    # The peak to compare with: that of the precision the most FLOPs ran in.
    dtype = max(encoders, key=lambda e: e["flops"])["computes_in"]
    achieved = flops / seconds / 1e9 if seconds else 0.0
    achieved_padded = padded_flops / seconds / 1e9 if seconds else 0.0
    summary = {
        "encoders": len(encoders),
        "computes_in": dtype,
        "layers_run": encoders[0]["layers_run"] if len(encoders) == 1 else [e["layers_run"] for e in encoders],
        "pieces": pieces,
        "pieces_per_word": round(pieces / n_words, 3) if n_words else None,
        "padded_pieces": sum(e["padded_pieces"] for e in encoders),
        "windows": sum(e["windows"] for e in encoders),
        "forward_passes": sum(e["forward_passes"] for e in encoders),
        "flops": flops,
        "flops_with_padding": padded_flops,
        "gflop_per_word": round(flops / n_words / 1e9, 6) if n_words else None,
        "seconds": round(seconds, 4),
        "achieved_gflop_per_second": round(achieved, 2),
        "achieved_gflop_per_second_with_padding": round(achieved_padded, 2),
        "fraction_of_peak": round(achieved / peaks[dtype], 4),
        "fraction_of_peak_with_padding": round(achieved_padded / peaks[dtype], 4),
        "config": encoders[0]["config"],
        "linear_parameters_per_layer": encoders[0]["linear_parameters_per_layer"],
    }
    if len(encoders) > 1:
        summary["per_encoder"] = [{**e, "seconds": round(e["seconds"], 4)} for e in encoders]
        del summary["config"], summary["linear_parameters_per_layer"]
    return summary
