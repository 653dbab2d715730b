"""Tagalog adaptation of the base LLM: a LoRA adapter trained on raw text.

    python -m fillm_spacy.adapt train assets/raw/alt-fil-wikinews.txt training/adapter-clm --objective clm
    python -m fillm_spacy.adapt probe corpus/ud/train.spacy corpus/ud/dev.spacy --adapter training/adapter-clm

- text.py: raw text → held-out split → packed piece sequences, and the corpus vocabulary.
- objectives.py: the causal LM and MNTP (masked next-piece prediction, bidirectional attention)
  losses, with output logits over the corpus vocabulary only.
- training.py: the training loop (a piece budget, one adapter on the layers the encoder reads).
- probe.py: a frozen linear UPOS probe per layer on gold words (before/after adaptation).
- cli.py: the command line.

The adapter is saved in peft's layout (models/adapters.py); an encoder names it with
`language_adapter`, and a pipeline trained so carries its weights inside.
"""
