"""emoreg: recognise emotion-regulation strategies from behaviour with LLMs.

The public API (see ``emoreg.api``): ``load_corpus``, ``load_task``, ``make_model``,
``load_model``, ``evaluate``, ``report``. Everything else is internal and may change.
"""

__version__ = "0.1.0"

from .api import EvaluationRun, evaluate, load_corpus, load_model, load_task, make_model, report

__all__ = ["EvaluationRun", "evaluate", "load_corpus", "load_model", "load_task", "make_model", "report"]
