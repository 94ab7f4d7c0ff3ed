"""``@immutable``: the stream path's records (pipeline/, processors/, triggers/), frozen for mypy only.

A ``@dataclass(frozen=True)`` cannot assign its fields in ``__init__``: it calls
``object.__setattr__`` once per field, which made a 21-field profile cost 1.9 us against
0.26 for the same class unfrozen, and such constructors were 8% of the stream stages' CPU
(issue 11, docs/performance.md). ``@immutable`` makes a slotted dataclass with the equality and
hash a frozen one has, and declares it frozen to mypy (``dataclass_transform``), so an assignment
to a field still fails the checks that every change runs; only the run-time guard is gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def immutable(cls: type[T]) -> type[T]:
    """A slotted dataclass, equal and hashed by its fields, read-only to mypy. A class that defines
    its own ``__hash__`` keeps it, as a frozen dataclass would (defining ``__eq__`` alone sets
    ``__hash__`` to None in the class body, which is not one)."""
    own_hash = cls.__dict__.get("__hash__", None) is not None
    return dataclass(slots=True, unsafe_hash=not own_hash)(cls)
