"""The second pass: a multi-task ranker with calibrated probabilities per engagement type.

* :mod:`~models.ranking.features`: the one feature function (a matrix per request);
* :mod:`~models.ranking.heads`: one model, a logistic head per engagement type over
  shared, standardised features, learned online (river) and served as numpy weights;
* :mod:`~models.ranking.calibration`: downsampling correction, Brier and reliability;
* :mod:`~models.ranking.utility`: utility weights and their validation;
* :mod:`~models.ranking.ranker`: the ranker state (cold fallback, validation,
  files) and the per-request :class:`~models.candidates.types.Ranker`;
* :mod:`~models.ranking.bootstrap`: labelled examples from logs without impressions;
* :mod:`~models.ranking.tune`: constrained Bayesian optimisation of the weights.
"""
