"""The public name of enosprov's errors: ``from enosprov.errors import EnosprovError``.

The classes live in the domain layer (:mod:`enosprov.domain.errors`); this module re-exports
them unchanged, so ``except enosprov.errors.NotFoundError`` catches what any layer raises.
"""

from .domain import errors as _errors
from .domain.errors import *  # noqa: F403

__all__ = list(_errors.__all__)
