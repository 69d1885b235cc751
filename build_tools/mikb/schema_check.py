r"""JSON Schema validation that speaks in file lines, not in JSON pointers.

jsonschema's own messages name paths like ``$.components[2].location``; contributors edit
YAML files, so each error is translated into a short sentence and located at the offending
key or value through the positions kept by :mod:`mikb.yaml_source`.

The schemas are written for ECMA-262 regular expressions (as JSON Schema specifies and
editors use them), but jsonschema runs them with Python's ``re.search``, where ``$`` also
matches before a final newline and ``\d`` matches any Unicode digit: ``"fx-1\n"`` and
``"1.²"`` would pass and then break page names and sorting in ``mikb build``. The validator
here restores the ECMA meaning, counts only true integers as integers (``2022.0`` is not a
year), and checks that ``format: date`` values are real calendar dates.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError

from mikb.diagnostics import Diagnostic, clip
from mikb.yaml_source import YamlDocument, field_name

SCHEMA_NAMES = ("problem", "categories", "circuit", "models", "papers")


@cache
def load_schema(name: str) -> dict[str, Any]:
    text = resources.files("mikb.schemas").joinpath(f"{name}.schema.json").read_text()
    return json.loads(text)


@cache
def ecma_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled with ECMA-262 meaning: ASCII classes, ``$`` only at the very end."""
    python = re.sub(r"(?<!\\)\$", r"\\Z", pattern)
    return re.compile(python, re.ASCII)


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not ecma_regex(pattern).search(instance):
        yield ValidationError(f"{clip(repr(instance))} does not match {pattern!r}")


def _is_integer(_checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_FORMATS = FormatChecker(formats=())


@_FORMATS.checks("date", raises=ValueError)
def is_calendar_date(instance: object) -> bool:
    """YYYY-MM-DD naming a day that exists (no 2023-02-30), nothing before or after it."""
    if not isinstance(instance, str):
        return True
    if not _DATE.fullmatch(instance):
        return False
    datetime.date.fromisoformat(instance)
    return True


_StrictValidator = validators.extend(
    Draft202012Validator, validators={"pattern": _pattern},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


@cache
def _validator(name: str) -> Any:
    return _StrictValidator(load_schema(name), format_checker=_FORMATS)


def validate_document(doc: YamlDocument, schema_name: str) -> list[Diagnostic]:
    """All schema violations of ``doc``, each at its own line, sorted by position."""
    if doc.data is None:
        return []
    if not isinstance(doc.data, dict):
        return [doc.diag((), f"expected a mapping at the top level, got {_type_name(doc.data)}")]
    errors = _leaf_errors(_validator(schema_name).iter_errors(doc.data))
    found = [_to_diagnostic(doc, err) for err in _one_per_value(errors) if err.validator != "required"]
    found += _missing_fields(doc, [err for err in errors if err.validator == "required"])
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


def _one_per_value(errors: list[ValidationError]) -> list[ValidationError]:
    """A date that fails its pattern need not also be reported as not a real date."""
    patterned = {tuple(err.absolute_path) for err in errors if err.validator == "pattern"}
    return [err for err in errors if not (err.validator == "format" and tuple(err.absolute_path) in patterned)]


def _missing_fields(doc: YamlDocument, errors: list[ValidationError]) -> list[Diagnostic]:
    """One diagnostic per mapping that lacks fields (an empty file lacks eight, one line says so)."""
    by_place: dict[tuple[Any, ...], list[str]] = {}
    for err in errors:
        name = err.message.split("'")[1] if "'" in err.message else "?"
        by_place.setdefault(tuple(err.absolute_path), []).append(clip(name))
    out = []
    for path, names in by_place.items():
        field = _field_name(path)
        where = f" in {field}" if field else ""
        listed = ", ".join(f"'{n}'" for n in sorted(set(names)))
        plural = "s" if len(set(names)) > 1 else ""
        out.append(doc.diag(path, f"missing required field{plural} {listed}{where}", key=bool(path)))
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
            return doc.diag((*path, key), f"unknown field '{clip(key)}' (allowed here: {clip(hint, 300)})", key=True)
    if err.validator == "type":
        expected = err.validator_value
        expected_text = " or ".join(expected) if isinstance(expected, list) else expected
        return doc.diag(path, f"{field or 'value'} must be {expected_text}, got {_type_name(err.instance)}")
    if err.validator == "enum":
        options = ", ".join(str(v) for v in err.validator_value)
        return doc.diag(path, f"{field} must be one of: {options} (got {clip(repr(err.instance))})")
    if err.validator == "pattern":
        description = _schema_description(err)
        hint = f" ({description})" if description else f" (must match {err.validator_value})"
        return doc.diag(path, f"{field} has an invalid value {clip(repr(err.instance))}{hint}")
    if err.validator == "format":
        return doc.diag(path, f"{field} is not a real date: {clip(repr(err.instance))} (YYYY-MM-DD)")
    if err.validator == "uniqueItems":
        return doc.diag(path, f"{field} lists the same item twice")
    if err.validator in ("minItems", "minLength", "minProperties"):
        return doc.diag(path, f"{field} is empty or too short")
    if err.validator in ("minimum", "maximum", "maxLength", "maxItems"):
        return doc.diag(path, f"{field} is out of range: {err.validator} is {clip(err.validator_value)}")
    return doc.diag(path, f"{field or 'entry'}: {clip(err.message, 200)}")


def _schema_description(err: ValidationError) -> str:
    return str(err.schema.get("description", "")) if isinstance(err.schema, dict) else ""


def _field_name(path: tuple[Any, ...]) -> str:
    return field_name(path)


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "nothing (null)"}.get(type(value), type(value).__name__)
