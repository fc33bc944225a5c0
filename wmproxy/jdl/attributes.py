"""Typed access to JDL attributes on top of classad2 (names are case-insensitive).

Readers (:func:`string_value`, :func:`string_list`, :func:`file_list`,
:func:`integer`, :func:`expiry_time`, :func:`job_kind`, :func:`job_type`) raise
:class:`JdlError` naming the attribute when its value has the wrong type; they take a ClassAd or
an :class:`AdView` of one (many readings of an ad that does not change: its names read once).
Writers (:func:`set_list`, :func:`delete`) keep the user's spelling of an attribute name. Pure: no
I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any, TypeGuard

import classad2

from wmproxy.errors import InvalidJdlAttributeError, JdlError

JOB_TYPES_OF_TYPE = ("job", "dag", "collection")
KNOWN_JOB_TYPES = (
    "normal", "interactive", "mpich", "parametric", "partitionable", "checkpointable",
)
#: The ``ExpiryTime`` values registration accepts, seconds since the epoch: from 0 up to,
#: not including, 2**32 (2106-02-07T06:28:16Z). The broker clamps a value stored before
#: the check into this range (:func:`wmproxy.services.brokering.deadline`).
EXPIRY_TIME_MIN, EXPIRY_TIME_END = 0, 2**32
_ABSENT = object()


def _fold(name: str) -> str:
    """``name`` as classad2 compares attribute names: ASCII letters lowercase, nothing else changed."""
    return name.lower() if name.isascii() else name.encode().lower().decode()


class AdView:
    """A ClassAd read many times while it does not change: what the readers of this module
    use of it (``name in view``, ``view[name]``, ``view.get``, ``view.lookup``, iteration over
    the names as spelt), with the names read once and each value converted once.

    A ClassAd answers ``name in ad`` by converting the value to Python, and an absent name by
    raising ``KeyError`` in classad2: some 6,000 instructions a test, and the registration
    checks ask for about thirty attributes a JDL mostly does not have (issue 14). Here an
    absent name is a set lookup. A present name is converted as ``ad[name]`` converts it (the
    same exceptions), once; the values are shared between readings and must not be modified.
    Names compare as classad2 compares them: ASCII letters without case, anything else as
    written.

    The ad must not change while the view is used (nothing here notices).
    """

    __slots__ = ("_names", "_values", "ad")

    def __init__(self, ad: classad2.ClassAd) -> None:
        self.ad = ad
        self._names = {name.lower() if name.isascii() else _fold(name): name for name in ad}
        self._values: dict[str, Any] = {}

    @classmethod
    def of(cls, ad: classad2.ClassAd | AdView) -> AdView:
        """``ad`` itself when it is a view already, else a view of it."""
        return ad if isinstance(ad, AdView) else cls(ad)

    def __contains__(self, name: str) -> bool:
        folded = name.lower() if name.isascii() else _fold(name)
        key = self._names.get(folded)
        if key is None:
            return False
        if folded not in self._values:  # converted, as ``name in ad`` converts it: the same exceptions
            self._values[folded] = self.ad[key]
        return True

    def __getitem__(self, name: str) -> Any:
        folded = name.lower() if name.isascii() else _fold(name)
        value = self._values.get(folded, _ABSENT)
        if value is _ABSENT:
            key = self._names.get(folded)
            value = self._values[folded] = self.ad[name if key is None else key]  # absent: classad2's KeyError
        return value

    def get(self, name: str, default: Any = None) -> Any:
        """``view[name]``, ``default`` when absent."""
        if self._names.get(name.lower() if name.isascii() else _fold(name)) is None:
            return default
        return self[name]

    def spelling(self, name: str) -> str | None:
        """The ad's own spelling of attribute ``name``; None when absent."""
        return self._names.get(name.lower() if name.isascii() else _fold(name))

    def lookup(self, name: str) -> Any:
        """The attribute's expression (``classad2.ExprTree``), as ``ClassAd.lookup``."""
        return self.ad.lookup(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names.values())

    def __len__(self) -> int:
        return len(self._names)


def string_value(ad: classad2.ClassAd, name: str) -> str | None:
    """A string-literal attribute, ``None`` when absent.

    Raises:
        JdlError: the attribute is not a string literal (``Executable = foo`` is an
            attribute reference, ``"a" + "b"`` an expression; both are refused).
    """
    value = ad.get(name, _ABSENT)  # one reading (``in`` then ``[]`` converts the value twice)
    if value is _ABSENT:
        return None
    if not isinstance(value, str):
        raise JdlError(f"Attribute {name} must be a string, not {text(ad, name)}")
    return value


def string_list(ad: classad2.ClassAd, name: str) -> tuple[str, ...]:
    """A list-of-strings attribute; a single string counts as a one-element list.

    Args:
        ad: the JDL.
        name: the attribute, case-insensitive.

    Returns:
        The strings, ``()`` when the attribute is absent.

    Raises:
        JdlError: the value is neither a string nor a list of string literals.
    """
    value: Any = ad.get(name, _ABSENT)
    if value is _ABSENT:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise JdlError(f"Attribute {name} must be a string or a list of strings, not {text(ad, name)}")


def file_list(ad: classad2.ClassAd, name: str) -> tuple[str, ...]:
    """A sandbox file list (:func:`string_list`) with no empty entry.

    Raises:
        JdlError: as :func:`string_list`, or an entry is empty or blank.
    """
    files = string_list(ad, name)
    if any(not entry.strip() for entry in files):
        raise JdlError(f"Attribute {name} contains an empty file name")
    return files


def integer(ad: classad2.ClassAd, name: str, default: int) -> int:
    """An integer attribute, ``default`` when absent.

    Raises:
        JdlError: the value is not an integer literal (booleans are not integers here, nor
            ``undefined``/``error``, which classad2 gives as ints).
    """
    value = ad.get(name, _ABSENT)
    if value is _ABSENT:
        return default
    if not is_number(value) or not isinstance(value, int):
        raise JdlError(f"Attribute {name} must be an integer, not {text(ad, name)}")
    return value


def is_number(value: Any) -> TypeGuard[int | float]:
    """Whether an attribute's value is a number literal: an int or a float, not a boolean
    nor classad2's ``undefined``/``error`` (which are ints to Python)."""
    return isinstance(value, (int, float)) and not isinstance(value, (bool, classad2.Value))


def expiry_time(ad: classad2.ClassAd) -> int | float | None:
    """``ExpiryTime``: seconds since the epoch, ``None`` when absent.

    Raises:
        JdlError: the value is not a number literal (a string, a boolean, an expression),
            not finite, or outside ``EXPIRY_TIME_MIN`` to ``EXPIRY_TIME_END`` (excluded).
    """
    value = ad.get("ExpiryTime", _ABSENT)
    if value is _ABSENT:
        return None
    if not is_number(value) or not math.isfinite(value) or not EXPIRY_TIME_MIN <= value < EXPIRY_TIME_END:
        raise JdlError(f"Attribute ExpiryTime must be a number of seconds since the epoch from {EXPIRY_TIME_MIN} "
                       f"to {EXPIRY_TIME_END - 1}, not {text(ad, 'ExpiryTime')}")
    return value


def job_kind(ad: classad2.ClassAd) -> str:
    """``Type``, lowercase, default ``job`` (``wmproxy-behaviour.md`` §3.1 step 7).

    Raises:
        InvalidJdlAttributeError: not job/dag/collection ("Invalid Job Type: <type>").
    """
    value = ad.get("Type", _ABSENT)
    if value is _ABSENT:
        return "job"
    if not isinstance(value, str) or value.lower() not in JOB_TYPES_OF_TYPE:
        shown = value if isinstance(value, str) else str(ad.lookup("Type")).strip()
        raise InvalidJdlAttributeError(f"Invalid Job Type: {shown}")
    return value.lower()


def job_type(ad: classad2.ClassAd) -> str:
    """``JobType``, lowercase, default ``normal`` (§3.1 step 8).

    Raises:
        InvalidJdlAttributeError: a list of more than one type ("Composite Job Type
            not yet supported").
        JdlError: an empty list, a non-string or an unknown type.
    """
    value = ad.get("JobType", _ABSENT)
    if value is _ABSENT:
        return "normal"
    if isinstance(value, list):
        if len(value) > 1:
            raise InvalidJdlAttributeError("Composite Job Type not yet supported")
        if not value:
            raise JdlError("Attribute JobType must not be an empty list")
        value = value[0]
    if not isinstance(value, str):
        raise JdlError("Attribute JobType must be a string")
    kind = value.lower()
    if kind not in KNOWN_JOB_TYPES:
        raise JdlError(f"Attribute JobType has an unknown value: {value}")
    return kind


def spelling(ad: classad2.ClassAd, name: str) -> str:
    """The ad's own spelling of attribute ``name`` (``name`` itself when absent)."""
    return next((key for key in ad if key.lower() == name.lower()), name)


def text(ad: classad2.ClassAd, name: str) -> str:
    """The attribute's expression on one line, for error messages."""
    return " ".join(str(ad.lookup(spelling(ad, name))).split())


def shown(value: Any) -> str:
    """Any value on one line, for error messages (classad2's ``undefined``/``error`` by name,
    not as the ints they are to Python)."""
    if isinstance(value, classad2.Value):
        return str(value.name).lower()
    return " ".join(str(value).split())


def delete(ad: classad2.ClassAd, name: str) -> None:
    """Remove attribute ``name`` if present."""
    if name in ad:
        del ad[name]


def set_list(ad: classad2.ClassAd, name: str, values: Iterable[str]) -> None:
    """Set a list-of-strings attribute, keeping the spelling of an existing one."""
    key = spelling(ad, name)
    delete(ad, name)
    ad[key] = list(values)


def fresh(ad: classad2.ClassAd) -> classad2.ClassAd:
    """A deep copy sharing nothing with ``ad``."""
    return classad2.ClassAd(str(ad))


def copy_without(ad: classad2.ClassAd, names: Iterable[str]) -> classad2.ClassAd:
    """A deep copy of ``ad`` without the attributes ``names``."""
    out = fresh(ad)
    for name in names:
        delete(out, name)
    return out
