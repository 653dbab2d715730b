"""Generative LoRA fine-tuning (the FiLLM paper's method), as a baseline for the encoder path.

    python -m fillm_spacy.finetune train --task pos --model gemma3-270m \
        --train assets/ud/train.conllu --dev assets/ud/dev.conllu --output adapters/llm_pos --max-steps 300
    python -m fillm_spacy.finetune evaluate --adapter adapters/llm_pos --test corpus/test.spacy \
        --output metrics/llm_pos.json

- training.py: instruction pairs (llm/instructions.py) → a LoRA adapter, saved as a peft adapter
  directory (adapter_config.json + adapter_model.safetensors) plus `fillm-adapter.json`: the base
  model's fingerprint and the task configuration, so evaluation (and any pipeline using the
  adapter) prompts exactly as in training.
- evaluation.py: an `llm` pipe (with the adapter, or the base model few-shot) on test docs,
  scored with spaCy's scorers.
- cli.py: the command line.
"""
