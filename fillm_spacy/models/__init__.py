"""Where base models come from: names and aliases → local directories (the gemma3-270m GGUF
conversion, the rebuilt tokenizer), one loaded base LLM per process, named LoRA adapters on it,
and int8 quantization for CPU inference. Only this package knows where weights come from."""
