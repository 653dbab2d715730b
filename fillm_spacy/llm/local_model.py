"""`fillm.LocalLLM.v1`: a spacy-llm model that generates with the shared base LLM.

spacy-llm's model protocol (0.7): the model is a callable taking, per doc, an iterable of
prompts (one per shard of the doc) and returning, per doc, the same number of responses.

The base model comes from `load_base_llm`, so every pipe naming the same model (the encoder,
other `llm` pipes, the summarizer) shares one copy in memory. A fine-tuned generative
adapter (a peft `save_pretrained` directory) is added to that copy as one more named adapter.
"""

import json
import re
import threading
import warnings
import weakref
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from ..models.adapters import active_adapter, new_adapter_name, sync_trainable
from ..models.loading import BaseLLM, check_fingerprint, load_base_llm

CHAT_FORMATS = ("auto", "plain", "seallm", "tokenizer")
# SeaLLM-7B-v2.5's documented turn format: "<|im_start|>{role}\n{content}<eos>\n" after one <bos>;
# `<|im_start|>` is plain text for its tokenizer, `<eos>` is the special token.
SEALLM_SYSTEM_PROMPT = "You are a helpful assistant."
# Written next to a fine-tuned adapter: which base model it was trained on.
ADAPTER_INFO_FILE = "fillm-adapter.json"
# spacy-llm shards documents against `context_length` by counting whitespace-separated words;
# a Tagalog word is under two Gemma pieces on average, so we report the piece budget halved.
PIECES_PER_WORD = 2
# spacy-llm 0.7's shard mapper never ends when even an empty shard's prompt exceeds the budget
# (it halves the shard forever); no budget below this is reported, so a model with a small
# context gets over-long prompts cut from the left (with a warning) instead of a hang.
MIN_REPORTED_WORDS = 1024
# Stands for the user's message when the chat template is rendered to find its markup:
# private-use characters, in no template and no real text.
PROMPT_MARKER = "\ue000fillm-prompt\ue001"

_adapters_lock = threading.Lock()
_loaded_adapters: Dict[Tuple[int, str], str] = {}


def load_saved_adapter(llm: BaseLLM, path: str) -> str:
    """Add the LoRA adapter saved in directory `path` to `llm` (once per process) and return
    its adapter name. The adapter is loaded frozen: generation never trains it."""
    directory = Path(path).expanduser().resolve()
    if not (directory / "adapter_config.json").exists():
        raise FileNotFoundError(
            f"'{directory}' is not a saved LoRA adapter (no adapter_config.json). Train one with "
            "`python -m fillm_spacy.finetune train ...`."
        )
    info_path = directory / ADAPTER_INFO_FILE
    if info_path.exists():
        check_fingerprint(json.loads(info_path.read_text())["base_fingerprint"], llm, f"Adapter '{directory}'")
    key = (id(llm), str(directory))
    with _adapters_lock:
        if key in _loaded_adapters:
            return _loaded_adapters[key]
        adapter_name = new_adapter_name("generative")
        with llm.lock:
            if llm.peft_model is None:
                from peft import PeftModel

                llm.peft_model = PeftModel.from_pretrained(
                    llm.model, str(directory), adapter_name=adapter_name, is_trainable=False
                )
            else:
                llm.peft_model.load_adapter(str(directory), adapter_name=adapter_name, is_trainable=False)
            # Loading un-freezes what it touches; this adapter never trains.
            sync_trainable(llm)
        _loaded_adapters[key] = adapter_name
        return adapter_name


def resolve_chat_format(chat_format: str, llm: BaseLLM) -> str:
    """ "auto": the tokenizer's own chat template if it ships one, SeaLLM's turn format for a
    SeaLLM model without one, else plain text (a base model continues the prompt)."""
    if chat_format not in CHAT_FORMATS:
        raise ValueError(f"chat_format must be one of {CHAT_FORMATS}, not '{chat_format}'")
    if chat_format != "auto":
        if chat_format == "tokenizer" and not getattr(llm.tokenizer, "chat_template", None):
            raise ValueError(f"chat_format 'tokenizer': the tokenizer of '{llm.name}' has no chat template")
        return chat_format
    if getattr(llm.tokenizer, "chat_template", None):
        return "tokenizer"
    if "seallm" in f"{llm.name} {llm.path}".lower():
        return "seallm"
    return "plain"


def encode_text(tokenizer, text: str) -> List[int]:
    """Pieces of text from outside (a document, a prompt built around one): a control token's
    spelling in it ("<eos>", "<start_of_turn>") is text, never the control token itself."""
    if not text:
        return []
    return tokenizer(text, add_special_tokens=False, split_special_tokens=True, return_token_type_ids=False)[
        "input_ids"
    ]


def encode_markup(tokenizer, text: str) -> List[int]:
    """Pieces of our own prompt markup (chat turns): its control tokens' spellings are the
    control tokens. They are matched here, and the text between them split like any text, so
    that no call switches the shared tokenizer out of split_special_tokens mode (the flag is
    state on the Rust tokenizer, which other threads may be using)."""
    pattern = _control_token_pattern(tokenizer)
    if not text or pattern is None:
        return encode_text(tokenizer, text)
    ids: List[int] = []
    position = 0
    for match in pattern.finditer(text):
        ids += encode_text(tokenizer, text[position : match.start()])
        ids.append(tokenizer.convert_tokens_to_ids(match.group()))
        position = match.end()
    return ids + encode_text(tokenizer, text[position:])


_control_patterns: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _control_token_pattern(tokenizer) -> Optional["re.Pattern"]:
    """A regex of the tokenizer's control tokens, longest first; cached per tokenizer (Gemma 3's
    has thousands), rebuilt if tokens were added since."""
    cached = _control_patterns.get(tokenizer)
    if cached is not None and cached[0] == len(tokenizer):
        return cached[1]
    specials = sorted(
        {token.content for token in tokenizer.added_tokens_decoder.values() if token.special}, key=len, reverse=True
    )
    pattern = re.compile("|".join(re.escape(token) for token in specials)) if specials else None
    _control_patterns[tokenizer] = (len(tokenizer), pattern)
    return pattern


class StopAfterAnswer:
    """transformers stopping criterion: a row is done once its response, leading whitespace
    stripped, contains a stop string. transformers' own `stop_strings` would also end a response
    that begins with one (a base model often answers the cue with a blank line first), leaving
    it empty."""

    def __init__(self, tokenizer, stops: Sequence[str], prompt_width: int):
        self.tokenizer = tokenizer
        self.stops = [stop for stop in stops if stop]
        self.prompt_width = prompt_width

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_width :], skip_special_tokens=True)
        done = [any(stop in text.lstrip() for stop in self.stops) for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class LocalLLM:
    """Greedy (deterministic) generation with the shared base LLM and an optional adapter; the
    arguments (and their defaults) are `fillm_local_llm_v1`'s."""

    def __init__(
        self,
        llm: BaseLLM,
        *,
        adapter_name: Optional[str],
        max_new_tokens: int,
        batch_size: int,
        chat_format: str,
        context_length: Optional[int],
        stop: Optional[List[str]],
        system_prompt: Optional[str],
    ):
        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be at least 1")
        self.llm = llm
        self.adapter_name = adapter_name
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.chat_format = resolve_chat_format(chat_format, llm)
        model_positions = int(getattr(llm.config, "max_position_embeddings", 4096) or 4096)
        self.max_context = int(context_length) if context_length else min(model_positions, 4096)
        if self.max_context <= max_new_tokens:
            raise ValueError(f"context_length ({self.max_context}) must exceed max_new_tokens ({max_new_tokens})")
        # A base model asked in plain text continues with the next made-up example after a blank
        # line; chat models end their turn with <eos>.
        if stop is None:
            stop = ["\n\n"] if self.chat_format == "plain" else ["<|im_start|>"]
        self.stop = list(stop)
        # SeaLLM's documented turns carry a system turn; other chat templates get one only on request
        # (some, Gemma's among them, refuse a system role).
        self.system_prompt = system_prompt
        if self.chat_format == "seallm" and system_prompt is None:
            self.system_prompt = SEALLM_SYSTEM_PROMPT
        self.n_truncated_prompts = 0
        self.last_response_pieces: List[int] = []  # generated pieces per response of the last call

    @property
    def context_length(self) -> int:
        """Prompt budget in (estimated) words, for spacy-llm's sharding of long documents."""
        return max(MIN_REPORTED_WORDS, (self.max_context - self.max_new_tokens) // PIECES_PER_WORD)

    @property
    def max_prompt_pieces(self) -> int:
        return self.max_context - self.max_new_tokens

    def format_prompt(self, prompt: str) -> str:
        """The prompt as the model expects to see it (chat turns for chat models)."""
        return "".join(self.prompt_parts(prompt))

    def prompt_parts(self, prompt: str) -> Tuple[str, str, str]:
        """(turn markup before, the prompt as it sits in the turn, turn markup after). Only the
        markup may hold control tokens: the prompt carries the document's text."""
        tokenizer = self.llm.tokenizer
        if self.chat_format == "plain":
            return "", prompt, ""
        if self.chat_format == "seallm":
            eos = tokenizer.eos_token
            system = f"<|im_start|>system\n{self.system_prompt}{eos}\n" if self.system_prompt else ""
            return f"{system}<|im_start|>user\n", prompt, f"{eos}\n<|im_start|>assistant\n"
        # The template may reshape the content (Gemma's trims it): render it once around a
        # marker no text holds to find the markup, once with the prompt to keep its reshaping.
        before, found, after = self._render_chat(PROMPT_MARKER).partition(PROMPT_MARKER)
        full = self._render_chat(prompt)
        if (
            not found
            or PROMPT_MARKER in after
            or not (full.startswith(before) and full.endswith(after) and len(full) >= len(before) + len(after))
        ):
            raise ValueError(
                f"The chat template of '{self.llm.name}' does not hold the user's message as one piece of text, "
                "so its markup cannot be told from the document's text: use chat_format 'plain' or 'seallm'."
            )
        return before, full[len(before) : len(full) - len(after)], after

    def _render_chat(self, content: str) -> str:
        messages = [{"role": "user", "content": content}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return self.llm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode_prompt(self, prompt: str) -> List[int]:
        """Piece ids of the formatted prompt, one <bos> first; an over-long prompt loses its
        beginning (the text to process and the answer cue sit at the end of every prompt).
        Control tokens come from the turn markup only: a "<eos>" or "<start_of_turn>" in the
        prompt (a document says anything) is spelled out in ordinary pieces."""
        tokenizer = self.llm.tokenizer
        before, content, after = self.prompt_parts(prompt)
        ids = encode_markup(tokenizer, before) + encode_text(tokenizer, content) + encode_markup(tokenizer, after)
        bos = tokenizer.bos_token_id
        if bos is not None and (not ids or ids[0] != bos):
            ids = [bos] + ids
        if len(ids) > self.max_prompt_pieces:
            self.n_truncated_prompts += 1
            warnings.warn(
                f"A prompt of {len(ids)} pieces exceeds the budget of {self.max_prompt_pieces} "
                f"(context_length {self.max_context} - max_new_tokens {self.max_new_tokens}); its beginning is cut.",
                stacklevel=2,
            )
            keep = self.max_prompt_pieces - (1 if bos is not None else 0)
            ids = ([bos] if bos is not None else []) + ids[len(ids) - keep :]
        return ids

    def cut_at_stop(self, text: str) -> str:
        text = text.lstrip()
        cut = len(text)
        for stop in self.stop:
            found = text.find(stop) if stop else -1
            if found >= 0:
                cut = min(cut, found)
        return text[:cut]

    def generate(self, prompts: Sequence[str], max_new_tokens: Optional[int] = None) -> List[str]:
        """One response per prompt. Prompts are batched by length; decoding is greedy. A row stops
        at its first stop string after its leading whitespace (`StopAfterAnswer`) and its text is
        cut before that string."""
        from transformers import GenerationConfig, StoppingCriteriaList

        tokenizer = self.llm.tokenizer
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos_ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        im_end = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
        if im_end is not None:
            eos_ids.append(im_end)
        config = GenerationConfig(
            max_new_tokens=max_new_tokens or self.max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=pad_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=eos_ids or None,
        )
        encoded = [self.encode_prompt(p) for p in prompts]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        responses: List[str] = [""] * len(encoded)
        pieces = [0] * len(encoded)
        model = self.llm.model
        device = next(model.parameters()).device
        with self.llm.lock:
            was_training = model.training
            model.eval()
            try:
                with active_adapter(self.llm, self.adapter_name), torch.inference_mode():
                    for start in range(0, len(order), self.batch_size):
                        rows = order[start : start + self.batch_size]
                        width = max(len(encoded[i]) for i in rows)
                        # Decoder-only generation pads on the left so every row continues at the same column.
                        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
                        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
                        for j, i in enumerate(rows):
                            ids = encoded[i]
                            input_ids[j, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                            attention_mask[j, width - len(ids) :] = 1
                        stopping = StoppingCriteriaList(
                            [StopAfterAnswer(tokenizer, self.stop, width)] if any(self.stop) else []
                        )
                        output = model.generate(
                            input_ids=input_ids.to(device),
                            attention_mask=attention_mask.to(device),
                            generation_config=config,
                            stopping_criteria=stopping,
                        )
                        for j, i in enumerate(rows):
                            new = output[j, width:]
                            # Rows that finished early are padded to the longest row.
                            pieces[i] = int((new != pad_id).sum())
                            responses[i] = self.cut_at_stop(tokenizer.decode(new, skip_special_tokens=True))
            finally:
                model.train(was_training)
                # peft's set_adapter and disable_adapter change what requires grad; put back what
                # trains (an encoder's adapter may be mid-update).
                sync_trainable(self.llm)
        self.last_response_pieces = pieces
        return responses

    def __call__(self, prompts: Iterable[Iterable[str]]) -> Iterable[Iterable[str]]:
        """Responses per doc, one per shard prompt, all docs' prompts generated in shared batches."""
        per_doc = [list(doc_prompts) for doc_prompts in prompts]
        flat = [prompt for doc_prompts in per_doc for prompt in doc_prompts]
        flat_responses = self.generate(flat) if flat else []
        responses: List[List[str]] = []
        offset = 0
        for doc_prompts in per_doc:
            responses.append(flat_responses[offset : offset + len(doc_prompts)])
            offset += len(doc_prompts)
        return responses


def fillm_local_llm_v1(
    model_name: str = "gemma3-270m",
    adapter: Optional[str] = None,
    max_new_tokens: int = 256,
    batch_size: int = 4,
    chat_format: str = "auto",
    context_length: Optional[int] = None,
    stop: Optional[List[str]] = None,
    system_prompt: Optional[str] = None,
    device: Optional[str] = None,
    dtype: str = "float32",
    name: Optional[str] = None,
) -> LocalLLM:
    """`fillm.LocalLLM.v1` (spacy-llm `llm_models`).

    model_name: `gemma3-270m`, a local Hugging Face directory, or a hub name in the local HF cache
        (e.g. `SeaLLMs/SeaLLM-7B-v2.5`). Shared with every other component naming it.
    adapter: a directory with a LoRA adapter saved by `fillm_spacy.finetune` (peft
        `save_pretrained`), added to the shared base as its own named adapter; None = base model.
    max_new_tokens: longest response, in model pieces.
    batch_size: prompts generated together.
    chat_format: "auto", "plain", "seallm" (SeaLLM-7B-v2.5 turns) or "tokenizer" (the
        tokenizer's chat template). "auto" picks the tokenizer's template, else SeaLLM turns for
        SeaLLM models, else plain prompts (base models such as Gemma 3 270M).
    context_length: prompt + response budget in pieces (default: the model's, at most 4096);
        a longer prompt loses its beginning, with a warning.
    stop: strings that end a response (default: a blank line for plain prompts; a new chat turn
        for chat formats). Generation is greedy, so outputs are deterministic.
    system_prompt: a system turn for chat formats (default: SeaLLM's "You are a helpful assistant."
        for the seallm format, none for a tokenizer's template).
    device, dtype: where and in what precision the shared base model is loaded; device None:
        wherever the shared model already is (an encoder's GPU), the CPU on first load.
    name: the former spelling of model_name, still read so that older configs load.
    """
    llm = load_base_llm(name or model_name, device=device, dtype=dtype)
    adapter_name = load_saved_adapter(llm, adapter) if adapter else None
    return LocalLLM(
        llm,
        adapter_name=adapter_name,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        chat_format=chat_format,
        context_length=context_length,
        stop=stop,
        system_prompt=system_prompt,
    )
