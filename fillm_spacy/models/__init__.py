"""Where base models come from: names and aliases → local directories (the gemma3-270m GGUF
conversion, the rebuilt tokenizer), one loaded base LLM per process, and named LoRA adapters on
it. Only this package knows where weights come from; it imports nothing else of fillm_spacy."""
