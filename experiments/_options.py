"""Keyword options from a configuration file, checked against the signature that takes them.

``dataset_kwargs`` and ``model_kwargs`` are passed on to a loader or a model class as keyword
arguments; :func:`check_options` refuses, before anything runs, an option the function does not
take, a required one that is missing and a value of the wrong type (from the annotation, or the
default's type).  Ranges stay with the function itself: it names them when it runs.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from pathlib import PurePath
from typing import Any

from sgn_memory.errors import SgnMemoryError


def check_options(
    func: Callable,
    options: Any,
    *,
    key: str,
    owner: str,
    supplied: Iterable[str] = (),
    keyword_only: bool = False,
) -> None:
    """Raise :class:`SgnMemoryError` unless ``func(**options)`` binds with values of the right
    types.

    ``key`` is the setting that holds the options (``"model_kwargs"``), ``owner`` what takes
    them (``"model 'mlp'"``), both for the messages; ``supplied`` names the parameters the
    caller fills itself; ``keyword_only`` limits the options to the keyword-only parameters.
    """
    if not isinstance(options, dict):
        raise SgnMemoryError(f"{key} = {options!r} must be a table of options for {owner}.")
    signature = inspect.signature(func)
    try:
        hints = typing.get_type_hints(func.__init__ if inspect.isclass(func) else func)
    except Exception:  # an annotation that does not evaluate: fall back on the defaults
        hints = {}
    skip = {"self", *supplied}
    accepted = {
        name: p
        for name, p in signature.parameters.items()
        if name not in skip
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and (p.kind == p.KEYWORD_ONLY or not keyword_only)
    }
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        known = ", ".join(accepted) or "none"
        raise SgnMemoryError(f"{key}: {owner} takes no option(s) {unknown}; it takes: {known}.")
    missing = [n for n, p in accepted.items() if p.default is p.empty and n not in options]
    if missing:
        raise SgnMemoryError(
            f"{key}: {owner} needs {', '.join(missing)} (e.g. {key} = {{{missing[0]} = ...}})."
        )
    for name, value in options.items():
        default = accepted[name].default
        fallback = Any if default is None or default is inspect.Parameter.empty else type(default)
        hint = hints.get(name, fallback)
        if not _accepts(hint, value):
            raise SgnMemoryError(
                f"{key}.{name} = {value!r}: {owner} takes a value of type {_describe(hint)}."
            )


def _accepts(hint: Any, value: Any) -> bool:
    """Whether a TOML value fits an annotation (lists stand for tuples and sequences)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(a, value) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str or (isinstance(hint, type) and issubclass(hint, PurePath)):
        return isinstance(value, str)
    if hint in (tuple, list) or origin in (tuple, list, Iterable, Sequence):
        if not isinstance(value, list | tuple):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:  # tuple[float, float]
            return len(value) == len(args) and all(map(_accepts, args, value))
        item = args[0] if args else Any
        return all(_accepts(item, v) for v in value)
    return True  # anything else: the function decides


def _describe(hint: Any) -> str:
    if isinstance(hint, type):
        return "text" if hint is str else hint.__name__
    return str(hint).replace("typing.", "").replace("pathlib.", "")
