"""A bounded least-recently-used map on ``collections.OrderedDict`` (issue 14).

``cachetools.LRUCache`` runs three or four Python calls per lookup (``get``, ``__contains__``,
``__getitem__``, its recency update); the per-certificate caches of :mod:`wmproxy.security.chain`
are looked up a dozen times per putProxy. Here a lookup is one Python call over the C
``OrderedDict``. What is kept, and what is pushed out first, is as in ``LRUCache``: ``get``
and setting a key make it the most recent; past ``maxsize`` entries the least recent goes.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar, overload

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")


class Lru(OrderedDict[K, V]):
    """At most ``maxsize`` entries; not thread-safe (callers hold their lock, as with ``LRUCache``)."""

    def __init__(self, maxsize: int) -> None:
        super().__init__()
        self.maxsize = maxsize

    @property
    def currsize(self) -> int:
        """The number of entries (``LRUCache``'s name for it)."""
        return len(self)

    @overload
    def get(self, key: K, default: None = None) -> V | None: ...

    @overload
    def get(self, key: K, default: V | D) -> V | D: ...

    def get(self, key: K, default: object = None) -> object:
        try:
            value = self[key]
        except KeyError:
            return default
        self.move_to_end(key)
        return value

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        if len(self) > self.maxsize:
            self.popitem(last=False)
