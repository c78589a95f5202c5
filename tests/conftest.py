"""Fixtures for the whole suite; they live in support.py, which tests import helpers from.

(Tests import ``support``, not ``conftest``: tests/models/candidates has a
conftest.py of its own, and two modules named ``conftest`` shadow each other.)
"""

from support import *  # noqa: F403 - re-exports the fixtures so pytest finds them
