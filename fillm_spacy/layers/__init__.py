"""thinc models and their torch modules, free of spaCy pipeline concerns: piece ↔ token alignment
and windows, the LLM encoder (batching, torch module, shim, registered model), the scalar mix,
the biaffine scorer, and a head's own features beside its listener (`with_features`)."""
