"""``Window``: a box of global pixels (or cells), ``Window(x0, y0, x1, y1)``: columns ``[x0, x1)``,
rows ``[y0, y1)`` (end-exclusive, the toolkit's one box order).

Windows name the part of an unbounded canvas that a render, a tile or a latent field evaluation
covers. Coordinates are global (the same pixel has the same coordinates in every tile) and may
be negative; the resolution they are counted at is given by context.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

Span = tuple[int, int]  # [start, stop) along one axis


@dataclasses.dataclass(frozen=True)
class Window:
    """A box of global pixels ``(x0, y0, x1, y1)``: columns ``[x0, x1)``, rows ``[y0, y1)``, at some
    resolution."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self.y1 - self.y0, self.x1 - self.x0

    def grow(self, m: int) -> "Window":
        """The window with ``m`` more pixels on every side (``m < 0`` shrinks it)."""
        return Window(self.x0 - m, self.y0 - m, self.x1 + m, self.y1 + m)

    def hull(self, other: "Window | None") -> "Window":
        """The smallest window covering both (``self`` when ``other`` is None)."""
        if other is None:
            return self
        return Window(min(self.x0, other.x0), min(self.y0, other.y0), max(self.x1, other.x1), max(self.y1, other.y1))

    def contains(self, other: "Window") -> bool:
        return self.y0 <= other.y0 and other.y1 <= self.y1 and self.x0 <= other.x0 and other.x1 <= self.x1

    def map(self, fy: Callable[[Span], Span], fx: Callable[[Span], Span] | None = None) -> "Window":
        """Apply a span function to the rows (``fy``) and columns (``fx``, default ``fy``)."""
        fx = fx or fy
        (y0, y1), (x0, x1) = fy((self.y0, self.y1)), fx((self.x0, self.x1))
        return Window(x0, y0, x1, y1)
