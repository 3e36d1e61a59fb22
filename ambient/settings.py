"""What each setting may be: a rule declared next to its field, one checker, one line per refusal.

A section (or a place's options) is a frozen dataclass; each field says what it allows in its
metadata, with the helpers below::

    n: int = dataclasses.field(default=4, metadata=within(1, MAX_N))
    device: str = dataclasses.field(default="auto", metadata=one_of("auto", "cpu"))
    path: str = dataclasses.field(default="default", metadata=free("a folder, checked when the model loads"))

:func:`check` applies every rule of a section and raises :class:`ConfigError` with one line
naming the key, the value, what is allowed and where to fix it, e.g.
``sampling.n must be 1..64, got 0: fix it in ambient.toml or AMBIENT_SAMPLING_N``.
:func:`ambient.config.parse_section` runs it on every table it parses.

A ``bool`` needs no rule (its type allows only true and false), ``None`` is allowed wherever
the type is optional, and a range bound may name another field of the same section (``"n"``).
:func:`undeclared` lists the fields that declare nothing, so a new setting cannot go unchecked.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Collection, Mapping
from typing import Any

from ambient.errors import ConfigError

RULE = "ambient.rule"  # the metadata key of a field's rule

Bound = int | float | str | None  # a number, the name of another field, or no bound


@dataclasses.dataclass(frozen=True)
class Rule:
    """What one field allows. ``note`` is said after it, in brackets."""

    note: str = dataclasses.field(default="", kw_only=True)

    def allows(self, value: Any, section: Any) -> bool:
        raise NotImplementedError

    def describe(self, section: Any) -> str:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Range(Rule):
    """``lo``..``hi`` (either may be open, or absent); ``off`` is allowed too and means ``off_means``."""

    lo: Bound = None
    hi: Bound = None
    above: bool = False  # lo itself is refused
    below: bool = False  # hi itself is refused
    off: int | float | None = None
    off_means: str = ""

    def allows(self, value: Any, section: Any) -> bool:
        if self.off is not None and value == self.off:
            return True
        if isinstance(value, float) and not math.isfinite(value):
            return False
        lo, hi = _bound(self.lo, section), _bound(self.hi, section)
        low_ok = lo is None or (value > lo if self.above else value >= lo)
        high_ok = hi is None or (value < hi if self.below else value <= hi)
        return bool(low_ok and high_ok)

    def describe(self, section: Any) -> str:
        lo, hi = _bound(self.lo, section), _bound(self.hi, section)
        if lo is not None and hi is not None and not (self.above or self.below):
            span = f"{_number(lo)}..{_number(hi)}"
        else:
            low = "" if lo is None else f"above {_number(lo)}" if self.above else f"{_number(lo)} or more"
            high = "" if hi is None else f"below {_number(hi)}" if self.below else f"at most {_number(hi)}"
            span = " and ".join(part for part in (low, high) if part) or "a number"
        if self.off is None:
            return span
        meaning = f" ({self.off_means})" if self.off_means else ""
        return f"{_number(self.off)}{meaning} or {span}"


@dataclasses.dataclass(frozen=True)
class Choices(Rule):
    """One of ``values`` (a live collection: a set that grows as backends register is read at check time)."""

    values: Collection[Any] = ()

    def allows(self, value: Any, section: Any) -> bool:
        return value in self.values

    def describe(self, section: Any) -> str:
        names = [str(v) for v in self.values]
        if not isinstance(self.values, tuple | list):
            names.sort()
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


@dataclasses.dataclass(frozen=True)
class Pattern(Rule):
    """A text that ``regex`` matches whole, described to a person as ``what``."""

    regex: str = ""
    what: str = ""

    def allows(self, value: Any, section: Any) -> bool:
        return isinstance(value, str) and re.fullmatch(self.regex, value) is not None

    def describe(self, section: Any) -> str:
        return self.what


@dataclasses.dataclass(frozen=True)
class NonEmpty(Rule):
    """A text with more than blanks (any text but "" with ``blanks``), or a list with at least one item."""

    what: str = "not empty"
    blanks: bool = False  # a text of only blanks (e.g. a stop string "\n") is allowed

    def allows(self, value: Any, section: Any) -> bool:
        if isinstance(value, str):
            return bool(value if self.blanks else value.strip())
        return len(value) > 0

    def describe(self, section: Any) -> str:
        return self.what


@dataclasses.dataclass(frozen=True)
class Each(Rule):
    """A list whose every item follows ``item``."""

    item: Rule = dataclasses.field(default_factory=NonEmpty)

    def allows(self, value: Any, section: Any) -> bool:
        return all(self.item.allows(v, section) for v in value)

    def describe(self, section: Any) -> str:
        return f"a list whose every item is {self.item.describe(section)}"


@dataclasses.dataclass(frozen=True)
class Template(Rule):
    """A ``str.format`` template that uses only the placeholders in ``fields`` (given with sample values)."""

    fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def allows(self, value: Any, section: Any) -> bool:
        try:
            value.format(**self.fields)
        except (KeyError, IndexError, ValueError, AttributeError):
            return False
        return True

    def describe(self, section: Any) -> str:
        names = ", ".join("{" + name + "}" for name in self.fields)
        return f"a template using only {names} (write other braces twice: {{{{ }}}})"


@dataclasses.dataclass(frozen=True)
class Free(Rule):
    """Anything its type allows; ``reason`` says why (or where it is checked instead)."""

    reason: str = ""

    def allows(self, value: Any, section: Any) -> bool:
        return True

    def describe(self, section: Any) -> str:
        return self.reason


# ------------------------------------------------------------ declarations (field metadata)
def within(
    lo: Bound = None,
    hi: Bound = None,
    *,
    above: bool = False,
    below: bool = False,
    off: float | None = None,
    off_means: str = "",
    note: str = "",
) -> dict[str, Rule]:
    """``lo``..``hi`` inclusive unless ``above``/``below``; ``off`` (e.g. 0 = no limit) allowed too."""
    return {RULE: Range(lo, hi, above, below, off, off_means, note=note)}


def one_of(*values: Any, note: str = "") -> dict[str, Rule]:
    return {RULE: Choices(values, note=note)}


def one_of_live(values: Collection[Any], *, note: str = "") -> dict[str, Rule]:
    """One of ``values`` as they are when the section is checked (a set other code adds to)."""
    return {RULE: Choices(values, note=note)}


def matching(regex: str, what: str, *, note: str = "") -> dict[str, Rule]:
    return {RULE: Pattern(regex, what, note=note)}


def nonempty(what: str = "not empty", *, blanks: bool = False, note: str = "") -> dict[str, Rule]:
    return {RULE: NonEmpty(what, blanks, note=note)}


def each(item: Mapping[str, Rule], *, note: str = "") -> dict[str, Rule]:
    """Every item of a list follows ``item`` (one of the declarations above)."""
    return {RULE: Each(item[RULE], note=note)}


def template(fields: Mapping[str, Any], *, note: str = "") -> dict[str, Rule]:
    """A ``str.format`` template that may use ``fields`` (names with a sample value of their type)."""
    return {RULE: Template(fields, note=note)}


def free(reason: str) -> dict[str, Rule]:
    """Explicitly unchecked here: ``reason`` says why (e.g. "checked when the model loads")."""
    return {RULE: Free(reason=reason)}


# ------------------------------------------------------------ checking
def check(section: Any, where: str) -> None:
    """Raise :class:`ConfigError` for the first field of ``section`` that its rule refuses."""
    for field in dataclasses.fields(section):
        rule: Rule | None = field.metadata.get(RULE)
        value = getattr(section, field.name)
        if rule is None or value is None or rule.allows(value, section):
            continue
        allowed = rule.describe(section) + (f" ({rule.note})" if rule.note else "")
        key = f"{where}.{field.name}"
        raise ConfigError(f"{key} must be {allowed}, got {value!r}: {fix_hint(key)}")


def fix_hint(key: str) -> str:
    """Where a person changes ``key``: the file, and for ambient's own sections its variable."""
    where, _, name = key.rpartition(".")
    if "." in where or not where:
        return "fix it in ambient.toml"
    return f"fix it in ambient.toml or AMBIENT_{where.upper()}_{name.upper()}"


def undeclared(cls: type[Any]) -> list[str]:
    """The fields of ``cls`` that declare no rule (a ``bool`` needs none)."""
    hints = typing.get_type_hints(cls)
    return [f.name for f in dataclasses.fields(cls) if RULE not in f.metadata and hints[f.name] is not bool]


def _bound(bound: Bound, section: Any) -> int | float | None:
    if isinstance(bound, str):
        value: int | float = getattr(section, bound)
        return value
    return bound


def _number(value: float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
