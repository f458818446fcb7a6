"""Navigating the config models by key path, for the loader: pydantic's error locations back
to YAML key paths (`describe_loc`), the keys a model accepts (`model_keys`, for "did you mean"),
and every `Path` field present in raw data (`path_values`, resolved relative to its file).

Deriving all of this from the models means a new section or field needs no change here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Discriminator, Tag
from pydantic.fields import FieldInfo

Key = str | int
KeyPath = tuple[Key, ...]


@dataclass(frozen=True)
class LocInfo:
    """What a pydantic error location means in terms of the YAML.

    path: the loc without union labels (tags such as 'crowd' or branch names such as 'int').
    owner: the model whose key `path[-1]` is (for 'did you mean' on unknown keys).
    labels: when the loc ends at a tagged union, its valid tags (e.g. the rule types).
    branch: True when a smart-union branch label was stripped (one error per branch).
    """

    path: tuple[Key, ...]
    owner: type[BaseModel] | None
    labels: tuple[str, ...]
    branch: bool


def describe_loc(loc: tuple[Key, ...], root: type[BaseModel]) -> LocInfo:
    """Strip the labels pydantic inserts into locs for unions, by walking the model types."""
    node: _Node | None = _node(root)
    path: list[Key] = []
    owner: type[BaseModel] | None = None
    branch = False
    for element in loc:
        if node is not None and _is_union(node.type):
            member = _members(node).get(str(element))
            branch = branch or node.discriminator is None
            node = _node(member) if member is not None else None
            continue
        owner = node.type if node is not None and _is_model(node.type) else None
        node = _child(node, element) if node is not None else None
        path.append(element)
    labels = tuple(_members(node)) if node is not None and _is_union(node.type) else ()
    return LocInfo(tuple(path), owner, labels, branch)


def model_keys(model: type[BaseModel]) -> list[str]:
    """The keys a model accepts in YAML (aliases where they exist)."""
    return [field.alias or name for name, field in model.model_fields.items()]


def path_values(data: Any, root: type[BaseModel]) -> Iterator[tuple[tuple[Key, ...], Any]]:
    """(key path, raw value) of every `Path`-typed field present in raw `data`.

    The loader resolves these relative to the file they were written in; deriving them from the
    models means a new `Path` field is resolved without anyone touching the loader.
    """
    yield from _walk_paths(_node(root), data, ())


@dataclass(frozen=True)
class _Node:
    type: Any
    discriminator: Any = None


def _node(annotation: Any, discriminator: Any = None) -> _Node:
    """Annotation without Annotated/Optional wrappers, keeping any union discriminator."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation, *metadata = get_args(annotation)
            for meta in metadata:
                if isinstance(meta, Discriminator):
                    discriminator = meta
                elif isinstance(meta, FieldInfo) and meta.discriminator is not None:
                    discriminator = meta.discriminator
            continue
        if _is_union(annotation):
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return _Node(annotation, discriminator)


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, UnionType)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _members(node: _Node) -> dict[str, Any]:
    """Tag → member annotation of a tagged union (Tag(...) or a Literal discriminator field)."""
    members: dict[str, Any] = {}
    for member in get_args(node.type):
        if get_origin(member) is Annotated:
            tag = next((meta.tag for meta in get_args(member)[1:] if isinstance(meta, Tag)), None)
            if tag is not None:
                members[tag] = member
                continue
        inner = _node(member).type
        if isinstance(node.discriminator, str) and _is_model(inner):
            field = inner.model_fields.get(node.discriminator)
            if field is not None and get_origin(field.annotation) is Literal:
                for value in get_args(field.annotation):
                    members[str(value)] = member
    return members


def _field(model: type[BaseModel], key: Key) -> FieldInfo | None:
    for name, field in model.model_fields.items():
        if key == (field.alias or name) or (key == name and model.model_config.get("populate_by_name")):
            return field
    return None


def _child(node: _Node, key: Key) -> _Node | None:
    if _is_model(node.type):
        field = _field(node.type, key)
        if field is None:
            return None
        annotation = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        return _node(annotation, field.discriminator)
    origin, args = get_origin(node.type), get_args(node.type)
    if origin is list and args:
        return _node(args[0])
    if origin is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:
            return _node(args[0])
        return _node(args[key]) if isinstance(key, int) and 0 <= key < len(args) else None
    if origin is dict and len(args) == 2:
        return _node(args[1])
    return None


def _walk_paths(node: _Node | None, value: Any, path: tuple[Key, ...]) -> Iterator[tuple[tuple[Key, ...], Any]]:
    if node is None:
        return
    if _is_union(node.type):
        yield from _walk_paths(_chosen_member(node, value), value, path)
    elif isinstance(node.type, type) and issubclass(node.type, Path):
        yield path, value
    elif _is_model(node.type) and isinstance(value, dict):
        for key, item in value.items():
            yield from _walk_paths(_child(node, key), item, (*path, key))
    elif get_origin(node.type) is list and isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk_paths(_child(node, index), item, (*path, index))


def _chosen_member(node: _Node, value: Any) -> _Node | None:
    """The union member raw `value` will be validated as, when the union is tagged."""
    if isinstance(node.discriminator, Discriminator) and callable(node.discriminator.discriminator):
        tag = node.discriminator.discriminator(value)
    elif isinstance(node.discriminator, str) and isinstance(value, dict):
        tag = value.get(node.discriminator)
    else:
        return None
    member = _members(node).get(str(tag))
    return _node(member) if member is not None else None
