"""The one declaration of every setting: a field of a frozen dataclass with its docstring.

Domain configs (``VadConfig``, ``AsrConfig``, ``CurationPolicy``, the keyword dataset and training
configs) and :class:`~audio_platform.settings.Settings` declare each field once: name, type,
default, and the PEP 257 attribute docstring under it. The Dagster resources, the environment
variables and docs/configuration.md are all derived from that declaration (see
:mod:`audio_platform.defs.config`), so a default or a description cannot differ between them.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import typing
from collections.abc import Iterable
from dataclasses import MISSING, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class ConfigField:
    name: str
    annotation: Any
    """The resolved type hint (``typing.get_type_hints``), e.g. ``float | None``."""
    default: Any
    description: str
    owner: type
    """The dataclass that declares it."""


def attribute_docs(cls: type) -> dict[str, str]:
    """The docstring under each annotated attribute of ``cls`` (the PEP 257 attribute docstrings)."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
    assert isinstance(body, ast.ClassDef)
    docs = {}
    for node, following in zip(body.body, body.body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = inspect.cleandoc(following.value.value)
    return docs


def described_fields(config: type, include: Iterable[str] | None = None) -> tuple[ConfigField, ...]:
    """The fields of dataclass ``config`` (only ``include``, in that order, when given), each with its
    default and docstring. A field without a default or a docstring is an error, not a blank."""
    declared = {f.name: f for f in fields(config)}
    names = list(include) if include is not None else list(declared)
    unknown = [name for name in names if name not in declared]
    if unknown:
        raise ValueError(f"{config.__name__} has no fields {unknown}")
    hints = typing.get_type_hints(config)
    docs = attribute_docs(config)
    undescribed = [name for name in names if name not in docs]
    if undescribed:
        raise ValueError(f"{config.__name__} fields {undescribed} need a docstring under their declaration")
    described = []
    for name in names:
        declaration = declared[name]
        if declaration.default is not MISSING:
            default = declaration.default
        elif declaration.default_factory is not MISSING:
            default = declaration.default_factory()
        else:
            raise ValueError(f"{config.__name__}.{name} has no default")
        described.append(ConfigField(name, hints[name], default, docs[name], config))
    return tuple(described)
