"""The generative side: a spacy-llm model on the shared base LLM, a UPOS tagging task, and
generative LoRA fine-tuning.

Registered through entry points (see pyproject.toml), so a config naming them works without
importing this package: `fillm.LocalLLM.v1` (group `thinc_llm_models`) and
`fillm.POSTagging.v1` (group `thinc_llm_tasks`): spacy-llm's registries are thinc's catalogue
namespaces ("thinc", "llm_models"/"llm_tasks"). Importing this package stays cheap: the submodules
load torch and spacy-llm only when used.
"""
