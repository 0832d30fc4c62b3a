"""A store layer's level of detail as one evented model (``ViewState``): what the user chose and what is drawn.

Pure (psygnal, no Qt), so the controller, the camera follower, the
Levels dock and the layer's metadata can all share it, each value with
one home.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from psygnal import evented

from .budgets import DEFAULT_VERTEX_BUDGET

#: The layer-metadata keys ``ViewState.mirror`` writes, each from one field.
MIRRORED = {
    "level": "level",
    "levels_shown": "levels_shown",
    "levels": "levels",
    "locked": "locked_level",
    "budget": "vertex_budget",
    "budget_reason": "budget_reason",
    "sampled_from": "sampled_from",
}


@evented
@dataclass
class ViewState:
    """One store layer's level of detail: what the user chose and what is drawn; pure and evented (psygnal).

    Each value has this one home: the layer's ``LevelOfDetail`` reads the
    budget and the lock from it, the follower writes what it drew, the
    Levels dock shows it and edits it, and ``layer.metadata`` is a mirror
    written from it (``mirror``).  Every change emits
    ``state.events.<field>``; set fields on the GUI thread only, since
    subscribers may be widgets.
    """

    #: The most vertices drawn for a view.
    budget: int = DEFAULT_VERTEX_BUDGET
    #: Where the budget came from ("software renderer (llvmpipe), ...", "set here").
    budget_reason: str = ""
    #: The level shown whatever the view, or None: chosen from the view.
    locked: int | None = None
    #: The (finest) level drawn now.
    level: int = 0
    #: Every level drawn now, finest first (several when each region shows its own).
    levels_shown: tuple[int, ...] = (0,)
    #: The store's levels.
    levels: tuple[int, ...] = ()
    #: Vertices drawn now.
    vertex_count: int = 0
    #: A store with only level 0, over the budget in view: the points in view, of which ``vertex_count``
    #: are drawn as an even subsample; 0 when every point in view is drawn.
    sampled_from: int = 0

    def __post_init__(self) -> None:
        if int(self.budget) < 1:
            raise ValueError(f"the vertex budget must be at least 1, got {self.budget}")

    def lock(self, level: int | None) -> None:
        """Show ``level`` whatever the view (None: choose from the view again); refuses a level the store lacks."""
        if level is not None and self.levels and int(level) not in self.levels:
            raise ValueError(f"level {level} is not one of {list(self.levels)}")
        self.locked = None if level is None else int(level)

    def set_budget(self, budget: int, reason: str | None = None) -> None:
        """A new vertex budget (at least 1), and where it came from when given."""
        if int(budget) < 1:
            raise ValueError(f"the vertex budget must be at least 1, got {budget}")
        if reason is not None:
            self.budget_reason = reason
        self.budget = int(budget)

    def show(self, level: int, levels_shown: Sequence[int], vertex_count: int, sampled_from: int = 0) -> None:
        """Record what was drawn (the follower, after a swap); ``sampled_from``: of how many points in view."""
        self.levels_shown = tuple(int(v) for v in levels_shown) or (int(level),)
        self.sampled_from = int(sampled_from)
        self.vertex_count = int(vertex_count)
        self.level = int(level)

    @property
    def sample_text(self) -> str:
        """What the Levels dock says of a level-0-only store drawn as a subsample ("" when all is drawn)."""
        if not self.sampled_from:
            return ""
        return (
            f"level 0 only: showing {self.vertex_count:,} of {self.sampled_from:,} points; "
            "build a pyramid for faster views"
        )

    def set_levels(self, levels: Sequence[int]) -> None:
        """The store's levels now (a build added or removed some); a lock on a level gone is released."""
        levels = tuple(int(v) for v in levels)
        if self.locked is not None and levels and self.locked not in levels:
            self.locked = None
        self.levels = levels

    @property
    def shown_text(self) -> str:
        """The level drawn as the Levels dock shows it: ``2``, or ``0–2`` for a level per region."""
        shown = self.levels_shown
        return str(self.level) if len(shown) <= 1 else f"{shown[0]}\u2013{shown[-1]}"

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any], **defaults: Any) -> ViewState:
        """A state from a layer's store metadata (what the reader wrote), ``defaults`` for what it lacks."""
        values = dict(defaults)
        for name, key in MIRRORED.items():
            if meta.get(key) is not None:
                values[name] = meta[key]
        for name in ("levels_shown", "levels"):
            if name in values:
                values[name] = tuple(int(v) for v in values[name])
        if "levels_shown" not in values and "level" in values:
            values["levels_shown"] = (int(values["level"]),)
        return cls(**values)

    def mirror(self, metadata: MutableMapping[str, Any]) -> Callable[[], None]:
        """Write every field into ``metadata`` now and after each change; returns what stops it."""

        def write(*_: Any) -> None:
            for name, key in MIRRORED.items():
                value = getattr(self, name)
                metadata[key] = list(value) if isinstance(value, tuple) else value

        write()
        self.events.connect(write)
        return lambda: self.events.disconnect(write)
