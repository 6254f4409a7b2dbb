"""vramfit: will this fine-tuning run fit on my GPU, why, and what is the best run that does.

The estimator and planner are pure Python and import neither torch nor transformers for
built-in models; only :mod:`vramfit.probe` does.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
