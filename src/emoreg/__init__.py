"""emoreg: recognise emotion-regulation strategies from behaviour with LLMs.

The public API (see ``emoreg.api``): ``load_corpus``, ``load_task``, ``make_model``,
``load_model``, ``evaluate``, ``report``; the ``Segment`` a model takes (or a dict of the segment
file's fields, or a DataFrame of them); ``EmoregError``, what every call raises for bad input.
Everything else is internal and may change.
"""

__version__ = "0.1.0"

from .api import EvaluationRun, evaluate, load_corpus, load_model, load_task, make_model, report
from .errors import EmoregError
from .segments import Segment

__all__ = ["EmoregError", "EvaluationRun", "Segment", "evaluate", "load_corpus", "load_model", "load_task",
           "make_model", "report"]
