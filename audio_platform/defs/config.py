"""Resources whose fields are the declared fields of the domain configs and the settings.

``declared_fields_resource(...)`` turns :func:`audio_platform.config_fields.described_fields` into
the pydantic fields of a ``ConfigurableResource`` base class (type, default, description), so the
launchpad, ``audio-platform ... --config`` files and the environment all reach exactly the fields
the domain code declares, and no field is written twice. ``bind`` builds a resource from values
given by name, e.g. the ``AUDIO_PLATFORM_<RESOURCE>_<FIELD>`` variables that
:func:`audio_platform.settings.load_settings` collected, parsing text as the field's type.
"""

from __future__ import annotations

import functools
import json
import operator
import typing
from collections.abc import Iterable, Mapping
from types import NoneType, UnionType
from typing import Any, TypeVar

from dagster import ConfigurableResource
from pydantic import Field, ValidationError, create_model

from audio_platform.config_fields import ConfigField
from audio_platform.settings import ENV_PREFIX

Config = TypeVar("Config")
Resource = TypeVar("Resource", bound=ConfigurableResource)


def _config_type(annotation: Any) -> Any:
    """The resource field type of a domain annotation: Dagster config has lists, not tuples."""
    origin = typing.get_origin(annotation)
    if origin is tuple:
        items = [arg for arg in typing.get_args(annotation) if arg is not Ellipsis]
        return list[_config_type(items[0])]  # type: ignore[misc]
    if origin is UnionType:
        return functools.reduce(operator.or_, (_config_type(arg) for arg in typing.get_args(annotation)))
    return annotation


def _config_value(value: Any) -> Any:
    return [_config_value(item) for item in value] if isinstance(value, tuple) else value


def _domain_value(value: Any) -> Any:
    return tuple(_domain_value(item) for item in value) if isinstance(value, list) else value


def declared_fields_resource(*declared: Iterable[ConfigField]) -> type[ConfigurableResource]:
    """A ConfigurableResource base class with one field per declared field. Subclass it to add
    the resource's docstring, methods and any field of its own."""
    flat = [item for group in declared for item in group]
    resource_fields: dict[str, Any] = {}
    for declared_field in flat:
        if declared_field.name in resource_fields:
            raise ValueError(f"two declared fields are named {declared_field.name!r}")
        resource_fields[declared_field.name] = (
            _config_type(declared_field.annotation),
            Field(default=_config_value(declared_field.default), description=declared_field.description),
        )
    model = create_model("DeclaredFields", __base__=ConfigurableResource, **resource_fields)
    # Which dataclass declared each field: domain_config hands a dataclass only its own fields.
    model._declared_by = {f.name: f.owner for f in flat}  # type: ignore[attr-defined]
    return model


def domain_config(resource: ConfigurableResource, config: type[Config], **values: Any) -> Config:
    """An instance of dataclass ``config`` from the resource's values of the fields they share, plus
    ``values``; the dataclass validates them."""
    declared_by: Mapping[str, type] = getattr(type(resource), "_declared_by", {})
    own = [name for name, owner in declared_by.items() if owner is config]
    return config(**{name: _domain_value(getattr(resource, name)) for name in own}, **values)


def _parse_text(raw: str, annotation: Any) -> Any:
    """An environment variable's text as the field's value: JSON for lists and mappings (a list of
    strings may also be comma-separated), `null`/`none` for an optional field's None."""
    args = typing.get_args(annotation)
    if NoneType in args and raw.strip().lower() in ("null", "none"):
        return None
    if typing.get_origin(annotation) in (list, dict):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            if annotation == list[str]:
                return [item.strip() for item in raw.split(",") if item.strip()]
            raise ValueError(f"{raw!r} is not JSON") from None
    return raw


def bind(resource: type[Resource], values: Mapping[str, Any], *, env_section: str | None = None) -> Resource:
    """``resource(**values)``. With ``env_section``, ``values`` came from the environment variables
    ``AUDIO_PLATFORM_<SECTION>_<FIELD>``: text is parsed as the field's type, and an unknown field or
    a value of the wrong type raises a ``ValueError`` naming the variable and what it accepts."""

    def variable(name: str) -> str:
        return f"{ENV_PREFIX}{(env_section or '').upper()}_{name.upper()}" if env_section else name

    declared = resource.model_fields
    unknown = sorted(set(values) - set(declared))
    if unknown:
        known = ", ".join(variable(name) for name in declared)
        raise ValueError(f"{', '.join(variable(n) for n in unknown)}: no such setting; known: {known}")
    parsed = {}
    for name, value in values.items():
        try:
            parsed[name] = _parse_text(value, declared[name].annotation) if isinstance(value, str) else value
        except ValueError as err:
            raise ValueError(f"{variable(name)}: {err}") from None
    try:
        return resource(**parsed)
    except ValidationError as err:
        problem = err.errors()[0]
        name = str(problem["loc"][0]) if problem["loc"] else "?"
        raise ValueError(f"{variable(name)}={parsed.get(name)!r}: {problem['msg']}") from None
