"""Offline evaluation: the protocol of ``../shared/data/BASELINES.md`` on the served code path.

* :mod:`~models.evaluation.split`: the time split and the :class:`Protocol`;
* :mod:`~models.evaluation.metrics`: tasks, seeds and targets, hit rates with
  user-bootstrap intervals, home-list hit@K, AUC, coverage, category cosine;
* :mod:`~models.evaluation.rows`: the :class:`Row` interface and the trivial references;
* :mod:`~models.evaluation.served`: the served components, computed by their own code;
* :mod:`~models.evaluation.baselines`: gensim, implicit, counts;
* :mod:`~models.evaluation.runner`: one run (:func:`evaluate`);
* :mod:`~models.evaluation.report`: Markdown.
"""

from models.evaluation.metrics import TASKS, Task
from models.evaluation.report import report_markdown
from models.evaluation.rows import RecentlyViewed, Row, SeedEcho
from models.evaluation.runner import evaluate
from models.evaluation.split import EvalData, Protocol, split_by_time

__all__ = [
    "TASKS",
    "EvalData",
    "Protocol",
    "RecentlyViewed",
    "Row",
    "SeedEcho",
    "Task",
    "evaluate",
    "report_markdown",
    "split_by_time",
]
