"""Candidate sources: cheap first-pass generators, each a small pure function.

Each source turns a user's state (and, when trained, the model) into a list of
:class:`~models.candidates.types.Candidate` with a human reason:

* :mod:`~models.candidates.etsy_user`: Etsy's user module (click/cart seeds -> cart tokens);
* :mod:`~models.candidates.tk_voting`, :mod:`~models.candidates.trajectory_line`,
  :mod:`~models.candidates.thompson`: Whatnot's three guard rails;
* :mod:`~models.candidates.user_vector`: the raw factorisation user vector;
* :mod:`~models.candidates.cooccurrence`, :mod:`~models.candidates.popularity`:
  no model needed (new deployments, new users);
* :mod:`~models.candidates.item_page`, :mod:`~models.candidates.cart_page`:
  the item and cart placements;
* :mod:`~models.candidates.merge`: merge, filters, explanations, ranker seam.

:mod:`models.surfaces` combines them into recipes per placement.
"""

from models.candidates.merge import Filters, PassThroughRanker, explain, merge
from models.candidates.types import Candidate, ModelParts, Ranker

__all__ = ["Candidate", "Filters", "ModelParts", "PassThroughRanker", "Ranker", "explain", "merge"]
