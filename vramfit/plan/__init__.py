"""The planner: the best fine-tuning run that fits a card, by a stated objective, or an honest no.

``plan(model, card, fixed, min_seq=, effective_batch=, margin=)`` -> :class:`PlanResult`. Imports
neither torch nor transformers. Layout: ``space`` (what is searched and what the user fixed, the margin),
``search`` (bisection over sizes, bounds and dominance over shapes), ``objective`` (the ranking),
``knobs`` (the price of each knob), ``codegen`` (the code to paste), ``nofit`` (the honest no),
``verify`` (the probe on the pick), ``result`` (the dataclasses).
"""

from __future__ import annotations

from vramfit.plan.planner import plan
from vramfit.plan.result import Candidate, KnobPrice, ModelFit, NoFit, PlanResult
from vramfit.plan.space import Margin, parse_margin

__all__ = ["plan", "PlanResult", "Candidate", "KnobPrice", "NoFit", "ModelFit", "Margin", "parse_margin"]
