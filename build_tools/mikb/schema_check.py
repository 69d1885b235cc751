"""JSON Schema validation that speaks in file lines, not in JSON pointers.

jsonschema's own messages name paths like ``$.components[2].location``; contributors edit
YAML files, so each error is translated into a short sentence and located at the offending
key or value through the positions kept by :mod:`mikb.yaml_source`.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from mikb.diagnostics import Diagnostic
from mikb.yaml_source import YamlDocument

SCHEMA_NAMES = ("problem", "categories", "circuit", "models", "papers")


@cache
def load_schema(name: str) -> dict[str, Any]:
    text = resources.files("mikb.schemas").joinpath(f"{name}.schema.json").read_text()
    return json.loads(text)


@cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(name))


def validate_document(doc: YamlDocument, schema_name: str) -> list[Diagnostic]:
    """All schema violations of ``doc``, each at its own line, sorted by position."""
    if doc.data is None:
        return []
    if not isinstance(doc.data, dict):
        return [doc.diag((), f"expected a mapping at the top level, got {_type_name(doc.data)}")]
    found = [_to_diagnostic(doc, err) for err in _leaf_errors(_validator(schema_name).iter_errors(doc.data))]
    unique = sorted(set(found), key=lambda d: (d.line, d.col, d.message))
    return unique


def _leaf_errors(errors: Any) -> list[ValidationError]:
    """Replace "is not valid under any of the given schemas" by the sub-errors that explain it."""
    out: list[ValidationError] = []
    for err in errors:
        if err.validator in ("anyOf", "oneOf") and err.context:
            out.extend(_leaf_errors(err.context))
        else:
            out.append(err)
    return out


def _to_diagnostic(doc: YamlDocument, err: ValidationError) -> Diagnostic:
    path = tuple(err.absolute_path)
    field = _field_name(path)
    if err.validator == "additionalProperties":
        allowed = set(err.schema.get("properties", {}))
        extras = [k for k in err.instance if k not in allowed] if isinstance(err.instance, dict) else []
        if extras:
            key = extras[0]
            hint = ", ".join(sorted(allowed))
            return doc.diag((*path, key), f"unknown field '{key}' (allowed here: {hint})", key=True)
    if err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else "?"
        where = f" in {field}" if field else ""
        return doc.diag(path, f"missing required field '{missing}'{where}", key=bool(path))
    if err.validator == "type":
        expected = err.validator_value
        expected_text = " or ".join(expected) if isinstance(expected, list) else expected
        return doc.diag(path, f"{field or 'value'} must be {expected_text}, got {_type_name(err.instance)}")
    if err.validator == "enum":
        options = ", ".join(str(v) for v in err.validator_value)
        return doc.diag(path, f"{field} must be one of: {options} (got {err.instance!r})")
    if err.validator == "pattern":
        description = _schema_description(err)
        hint = f" ({description})" if description else f" (must match {err.validator_value})"
        return doc.diag(path, f"{field} has an invalid value {err.instance!r}{hint}")
    if err.validator == "uniqueItems":
        return doc.diag(path, f"{field} lists the same item twice")
    if err.validator in ("minItems", "minLength", "minProperties"):
        return doc.diag(path, f"{field} is empty or too short")
    if err.validator in ("minimum", "maximum", "maxLength", "maxItems"):
        return doc.diag(path, f"{field} is out of range: {err.message}")
    return doc.diag(path, f"{field or 'entry'}: {err.message}")


def _schema_description(err: ValidationError) -> str:
    return str(err.schema.get("description", "")) if isinstance(err.schema, dict) else ""


def _field_name(path: tuple[Any, ...]) -> str:
    """``('components', 2, 'location')`` -> ``components[2].location``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "nothing (null)"}.get(type(value), type(value).__name__)
