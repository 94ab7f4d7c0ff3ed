"""Backward-compatibility check of Avro schemas: can a new reader read data an old writer wrote?

Implements the resolution rules of the Avro specification ("Schema Resolution")
over two raw schemas, so CI can compare every schema in ``schemas/`` with each of
its previously committed versions without a registry server. Returns the list of
problems, each with the path where it occurs; empty means compatible.
"""

from __future__ import annotations

from typing import Any

from fastavro.schema import expand_schema, parse_schema

_PROMOTIONS = {
    ("int", "long"),
    ("int", "float"),
    ("int", "double"),
    ("long", "float"),
    ("long", "double"),
    ("float", "double"),
    ("string", "bytes"),
    ("bytes", "string"),
}
_NAMED = {"record", "enum", "fixed", "error"}


def _expanded(raw: dict[str, Any]) -> Any:
    # Inline named-type references so each node carries its full definition.
    return expand_schema(parse_schema(raw, _write_hint=False))


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        kind = schema["type"]
        return kind if isinstance(kind, str) else _kind(kind)
    return str(schema)


def _short(name: str | None) -> str:
    return (name or "").rsplit(".", 1)[-1]


def _names_match(writer: dict[str, Any], reader: dict[str, Any]) -> bool:
    names = {_short(reader.get("name"))} | {_short(a) for a in reader.get("aliases", [])}
    return _short(writer.get("name")) in names


def check_backward(new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    """Problems that stop ``new`` (reader) from reading data written with ``old`` (writer)."""
    problems: list[str] = []
    _match(_expanded(old), _expanded(new), "$", problems)
    return problems


def _readable(writer: Any, reader: Any) -> bool:
    probe: list[str] = []
    _match(writer, reader, "", probe)
    return not probe


def _match(writer: Any, reader: Any, path: str, problems: list[str]) -> None:
    wk, rk = _kind(writer), _kind(reader)
    if wk == "union":
        for i, branch in enumerate(writer):
            _match(branch, reader, f"{path}<{_kind(branch)}#{i}>", problems)
        return
    if rk == "union":
        if not any(_readable(writer, branch) for branch in reader):
            problems.append(f"{path}: writer type {wk} matches no branch of the reader's union")
        return
    if wk != rk:
        if (wk, rk) not in _PROMOTIONS:
            problems.append(f"{path}: type changed from {wk} to {rk}")
        return
    if rk in ("record", "error"):
        if not _names_match(writer, reader):
            problems.append(f"{path}: record renamed from {writer.get('name')} to {reader.get('name')}")
        writer_fields = {f["name"]: f for f in writer["fields"]}
        for field in reader["fields"]:
            names = [field["name"], *field.get("aliases", [])]
            source = next((writer_fields[n] for n in names if n in writer_fields), None)
            if source is None:
                if "default" not in field:
                    problems.append(f"{path}.{field['name']}: new field without a default")
                continue
            _match(source["type"], field["type"], f"{path}.{field['name']}", problems)
    elif rk == "enum":
        if not _names_match(writer, reader):
            problems.append(f"{path}: enum renamed from {writer.get('name')} to {reader.get('name')}")
        missing = set(writer["symbols"]) - set(reader["symbols"])
        if missing and "default" not in reader:
            problems.append(f"{path}: enum symbols removed without a default: {sorted(missing)}")
    elif rk == "array":
        _match(writer["items"], reader["items"], f"{path}[]", problems)
    elif rk == "map":
        _match(writer["values"], reader["values"], f"{path}{{}}", problems)
    elif rk == "fixed" and (not _names_match(writer, reader) or writer["size"] != reader["size"]):
        problems.append(f"{path}: fixed type changed name or size")
