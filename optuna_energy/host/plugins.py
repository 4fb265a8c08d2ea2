"""Registries open to plug-ins: built-in entries, entries registered at run time, and entries that
packages installed in this Python environment name under an entry-point group.

A package extends optuna-energy by naming objects under one of the groups
(``optuna_energy.layer_kinds``, ``optuna_energy.datasets``) in its ``pyproject.toml``::

    [project.entry-points."optuna_energy.layer_kinds"]
    depthwise = "my_package.layers:Depthwise"

The registry loads its group the first time it is read, so a plug-in costs nothing until its
registry is needed and is never registered twice.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

Entry = TypeVar("Entry")


class Registry(Mapping[str, Entry], Generic[Entry]):
    """Entries by name, in registration order: built-ins first, then plug-ins.

    Args:
        what: What an entry is, for messages (``"layer kind"``).
        group: The entry-point group plug-ins are read from, once, on the first read.
        builtins: The package's own entries.
        accept: Turns what a caller or an entry point gives into an entry, or raises ``ValueError``
            (``TypeError``) with one line naming what is wrong; called for the built-ins too.
    """

    def __init__(self, what: str, *, group: str, builtins: Mapping[str, Any],
                 accept: Callable[[str, Any], Entry]) -> None:
        self.what, self.group, self._accept = what, group, accept
        self._entries: dict[str, Entry] = {}
        self._loaded = False
        for name, given in builtins.items():
            self.register(name, given)

    def register(self, name: str, given: Any) -> Entry:
        """Add an entry under ``name``; returns the entry as stored.

        Raises:
            ValueError: ``name`` is taken, or the entry is incomplete (the message says what).
        """
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is already registered; "
                             f"registered: {', '.join(self._entries)}")
        entry = self._accept(name, given)
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove an entry registered at run time (a test's, an interactive session's)."""
        del self._entries[name]

    def _load_plugins(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # first: a plug-in that reads the registry while it loads must not recurse
        for point in importlib.metadata.entry_points(group=self.group):
            try:
                given = point.load()
            except Exception as error:
                package = point.dist.name if point.dist else "an unknown package"
                raise ImportError(f"{self.what} plug-in {point.name!r} = {point.value!r} of {package} "
                                  f"(entry points {self.group}) does not load: "
                                  f"{type(error).__name__}: {error}") from error
            self.register(point.name, given)

    def __getitem__(self, name: str) -> Entry:
        self._load_plugins()
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        self._load_plugins()
        return iter(list(self._entries))  # a copy: registering while iterating is allowed

    def __len__(self) -> int:
        self._load_plugins()
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self)})"
