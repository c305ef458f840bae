"""Cross-subject evaluation: configs, folds by subject, the runner, metrics and statistics."""

from .config import EvalConfig, load_config
from .runner import evaluate

__all__ = ["EvalConfig", "evaluate", "load_config"]
