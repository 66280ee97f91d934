"""Search strategies behind one ask/tell interface."""

from nasforge.strategies.base import Exhausted, Result, Strategy

__all__ = ["Exhausted", "Result", "Strategy"]
