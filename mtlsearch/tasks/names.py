"""Which task names are valid, how they are printed and how they become module keys.

A task name is a key everywhere: of targets, outputs, heads, weights, ``.npz`` members and
rows of printed tables. The rule is defined here once and checked wherever names come from
users or files (datasets, graph JSON, exported architectures):

* a non-empty ``str`` of at most :data:`MAX_NAME_LENGTH` characters;
* no leading or trailing whitespace;
* no control, format (right-to-left marks among them), surrogate, private-use or unassigned
  characters (Unicode categories Cc, Cf, Cs, Co, Cn), no line or paragraph separators
  (Zl, Zp);
* no path separator (``/``, ``\\``), and not ``.`` or ``..``.

Real names pass: CelebA's ``5_o_Clock_Shadow``, CUB's ``has_bill_shape::curved_(up_or_down)``,
``left eye``, ``size+1``, ``2nd``, ``größe``, ``颜色``.

Names of one model must also differ in their module key (:func:`name_key`): letters, digits
and ``_`` are kept, every other character becomes ``_``, so ``a.b`` and ``a_b`` would share
one head and are refused together.

Example:
    >>> check_task_name("has_bill_shape::curved_(up_or_down)")
    'has_bill_shape::curved_(up_or_down)'
    >>> display_name("evil\\u202eeman")
    'evil\\\\u202eeman'
    >>> name_key("größe.cm")
    'größe_cm'
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from mtlsearch.errors import TaskError

__all__ = [
    "MAX_NAME_LENGTH",
    "NAME_RULE",
    "check_task_name",
    "check_task_names",
    "display_name",
    "name_key",
    "name_problem",
]

MAX_NAME_LENGTH = 200
#: The rule, as every refusal states it.
NAME_RULE = (
    f"a task name is non-empty text of at most {MAX_NAME_LENGTH} characters, without leading "
    "or trailing spaces, control or format characters (such as right-to-left marks), "
    "private-use or unassigned characters, line breaks, '/' or '\\', and is not '.' or '..'"
)
_BAD_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "a format character",
    "Cs": "a surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}
_SHOWN = 60  # characters of a refused name quoted in a message


def display_name(name: object, max_chars: int | None = None) -> str:
    """``name`` safe to print on a terminal: control, format and bidi characters escaped.

    Printable characters are kept (non-ASCII letters included); everything else is written
    as ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``, and a backslash as ``\\\\``, so the output
    cannot move the cursor, reverse the text or hide characters. Non-strings are shown with
    ``repr``. With ``max_chars``, a longer result is cut and says how long the name was.
    """
    if not isinstance(name, str):
        text = repr(name)
    else:
        parts = []
        for ch in name:
            if ch == "\\":
                parts.append("\\\\")
            elif ch.isprintable():
                parts.append(ch)
            else:
                code = ord(ch)
                parts.append(
                    f"\\x{code:02x}" if code < 0x100
                    else f"\\u{code:04x}" if code < 0x10000
                    else f"\\U{code:08x}"
                )
        text = "".join(parts)
    if max_chars is not None and len(text) > max_chars:
        length = len(name) if isinstance(name, str) else len(text)
        text = f"{text[:max_chars]}... ({length} characters)"
    return text


def name_problem(name: object) -> str | None:
    """What makes ``name`` an invalid name (a phrase), or ``None`` when it is valid."""
    if not isinstance(name, str):
        return f"it is a {type(name).__name__}, not text"
    if not name:
        return "it is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"it has {len(name)} characters, above the limit of {MAX_NAME_LENGTH}"
    if name in (".", ".."):
        return "'.' and '..' name folders"
    for position, ch in enumerate(name):
        category = unicodedata.category(ch)
        if category in _BAD_CATEGORIES:
            label = unicodedata.name(ch, "")
            label = f" {label}" if label else ""
            return (f"character {position + 1} is U+{ord(ch):04X}{label}, "
                    f"{_BAD_CATEGORIES[category]}")
        if ch in "/\\":
            return f"character {position + 1} is {ch!r}, a path separator"
    if name != name.strip():
        return "it starts or ends with whitespace"
    return None


def check_task_name(name: object) -> str:
    """``name`` if it is a valid task name, else a :class:`TaskError` naming it and the rule.

    Example:
        >>> check_task_name("a/b")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mtlsearch.errors.TaskError: task name 'a/b' is not allowed: character 2 is '/', ...
    """
    problem = name_problem(name)
    if problem is not None:
        raise TaskError(
            f"task name '{display_name(name, _SHOWN)}' is not allowed: {problem}; {NAME_RULE}: "
            "rename the task"
        )
    return name  # type: ignore[return-value]  # name_problem checked it is a str


def name_key(name: str) -> str:
    """The module key of ``name``: letters, digits and ``_`` kept, anything else ``_``.

    ``nn.ModuleDict`` keys cannot hold a dot; keeping letters of every script keeps the keys
    of ``größe`` and ``颜色`` apart. The key of an ASCII name is the one mtlsearch 0.1 used.
    """
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)


def check_task_names(names: Iterable[object]) -> list[str]:
    """The names as a list, once each checked by :func:`check_task_name`, unique, and with
    distinct module keys (:func:`name_key`); a :class:`TaskError` names the culprits."""
    names = list(names)
    keys: dict[str, str] = {}
    seen: set[str] = set()
    for name in names:
        check_task_name(name)
        if name in seen:
            raise TaskError(
                f"task name '{display_name(name, _SHOWN)}' is given twice; task names must be "
                "unique: rename or drop one"
            )
        seen.add(name)
        key = name_key(name)
        other = keys.setdefault(key, name)
        if other != name:
            raise TaskError(
                f"task names '{display_name(other, _SHOWN)}' and '{display_name(name, _SHOWN)}' "
                f"both become the module key '{display_name(key, _SHOWN)}' (characters other "
                "than letters, digits and '_' become '_'), so their heads could not be told "
                "apart: rename one of them"
            )
    return names  # type: ignore[return-value]  # every entry checked above
