"""Statistics for comparing a fine-tuned model with its base on the same prompts.

Rates carry Wilson score intervals; changes are paired (same items for both models), so
they use Newcombe's hybrid score interval for a difference of paired proportions and the
exact McNemar test. :func:`compare` turns judgements into :class:`~compliance.records.Findings`.
"""

from compliance.stats.compare import compare
from compliance.stats.intervals import wilson_interval
from compliance.stats.multiplicity import adjust, disagreement, holm
from compliance.stats.paired import mcnemar_exact, newcombe_paired_interval

__all__ = ["adjust", "compare", "disagreement", "holm", "mcnemar_exact", "newcombe_paired_interval",
           "wilson_interval"]
