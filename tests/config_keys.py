"""Every key path the configuration models accept, and the key paths a YAML document uses.

`config/example.yaml` promises to show every key; the test that keeps that promise compares
`model_key_paths(GatewayConfig)` with `data_key_paths(example, GatewayConfig)`. Both are
derived from the pydantic models, so a field added to any section without a line in the
example fails that test.

Paths read like the YAML: `cameras[].zones[].polygon`, `sensor_brokers.*.host` (a map keyed by
names), and a union member in angle brackets, named by its `type:` (rules, outputs) or by the
key that selects it (camera sources): `cameras[].rules[]<crowd>.min_people`,
`cameras[].source<onvif>.onvif.events`, `outputs[]<gb28181>.channels`. A key every member of a
union has is one key, `<*>`: `cameras[].rules[]<*>.schedule` is shown by any rule that has it.
"""

from __future__ import annotations

from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel


def model_key_paths(model: type[BaseModel]) -> set[str]:
    """Every key path under `model`, leaves and sections alike."""
    found: set[str] = set()
    _walk_type(model, "", found)
    return found


def data_key_paths(data: Any, model: type[BaseModel]) -> set[str]:
    """The key paths `data` (parsed YAML) writes, named as `model_key_paths` names them.

    Keys the model does not know are left out (`gateway check` reports those)."""
    found: set[str] = set()
    _walk_data(data, model, "", found)
    return found


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _members(annotation: Any) -> list[Any]:
    """The non-None members of a union (an Optional is a union of one)."""
    annotation = _unwrap(annotation)
    if get_origin(annotation) in (Union, UnionType):
        members = [_unwrap(member) for member in get_args(annotation)]
        return [member for member in members if member is not NoneType]
    return [annotation]


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def variant_tag(model: type[BaseModel]) -> str:
    """A union member's name: its `type:` literal, else its first key (`rtsp`, `nvr`, ...)."""
    type_field = model.model_fields.get("type")
    if type_field is not None and get_origin(_unwrap(type_field.annotation)) is Literal:
        return str(get_args(_unwrap(type_field.annotation))[0])
    name, field = next(iter(model.model_fields.items()))
    return field.alias or name


def _keys(model: type[BaseModel]) -> dict[str, Any]:
    """The model's YAML keys (aliases where they exist) and their fields."""
    return {field.alias or name: field for name, field in model.model_fields.items()}


def _common_keys(models: list[type[BaseModel]]) -> frozenset[str]:
    return frozenset.intersection(*(frozenset(_keys(model)) for model in models))


def _walk_type(annotation: Any, prefix: str, found: set[str]) -> None:
    members = _members(annotation)
    models = [member for member in members if _is_model(member)]
    if len(models) > 1:
        common = _common_keys(models)
        for member in models:
            _walk_model(member, prefix, found, variant_tag(member), common)
        return
    for member in members:
        if _is_model(member):
            _walk_model(member, prefix, found)
        elif get_origin(member) is list:
            _walk_type(get_args(member)[0], f"{prefix}[]", found)
        elif get_origin(member) is dict:
            _walk_type(get_args(member)[1], f"{prefix}.*", found)


def _walk_model(model: type[BaseModel], prefix: str, found: set[str], tag: str | None = None,
                common: frozenset[str] = frozenset()) -> None:
    for key, field in _keys(model).items():
        path = _join(_tagged(prefix, key, tag, common), key)
        found.add(path)
        _walk_type(field.annotation, path, found)


def _tagged(prefix: str, key: str, tag: str | None, common: frozenset[str]) -> str:
    """A union member's key: under `<*>` when every member has it, else under the member's tag."""
    if tag is None:
        return prefix
    return f"{prefix}<*>" if key in common else f"{prefix}<{tag}>"


def _pick_variant(data: dict[Any, Any], models: list[type[BaseModel]]) -> type[BaseModel] | None:
    """The union member `data` is written for: the one named by its `type:`, else the one whose
    selecting key it has (`rtsp:`, `onvif:`, ...)."""
    for model in models:
        tag = variant_tag(model)
        if "type" in model.model_fields and data.get("type") == tag:
            return model
        if "type" not in model.model_fields and tag in data:
            return model
    return None


def _walk_data(data: Any, annotation: Any, prefix: str, found: set[str]) -> None:
    members = _members(annotation)
    models = [member for member in members if _is_model(member)]
    if isinstance(data, dict) and len(models) > 1:
        chosen = _pick_variant(data, models)
        if chosen is not None:
            _walk_model_data(data, chosen, prefix, found, variant_tag(chosen), _common_keys(models))
        return
    for member in members:
        if _is_model(member) and isinstance(data, dict):
            _walk_model_data(data, member, prefix, found)
        elif get_origin(member) is list and isinstance(data, list):
            for item in data:
                _walk_data(item, get_args(member)[0], f"{prefix}[]", found)
        elif get_origin(member) is dict and isinstance(data, dict):
            for value in data.values():
                _walk_data(value, get_args(member)[1], f"{prefix}.*", found)


def _walk_model_data(data: dict[Any, Any], model: type[BaseModel], prefix: str, found: set[str],
                     tag: str | None = None, common: frozenset[str] = frozenset()) -> None:
    fields = _keys(model)
    for key, value in data.items():
        field = fields.get(key)
        if field is None:
            continue
        path = _join(_tagged(prefix, key, tag, common), key)
        found.add(path)
        _walk_data(value, field.annotation, path, found)
