"""Schema evolution: every schema in ``schemas/`` against every released version in ``schemas/history/``.

Deployment order is consumers before producers, so the rule that must hold is *backward*: a new
reader reads data an old writer wrote (old events stay in the topics and tables). *Forward* (an old
reader reads new data) is checked too: it is what lets a consumer be rolled back, or upgraded late,
after its producer already writes the new version. Both use Apache avro's
``ReaderWriterCompatibilityChecker``, which implements the specification's resolution rules; this
module only pairs the files and names the failures.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import avro.errors
import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from pipeline.errors import SchemaError
from pipeline.immutable import immutable
from pipeline.serde import SCHEMAS_DIR


class Direction(StrEnum):
    BACKWARD = "backward"  # the current schema reads data a released version wrote
    FORWARD = "forward"  # a released version reads data the current schema writes


@immutable
class Incompatibility:
    """One reader/writer pair the Avro resolution rules reject."""

    schema: str  # file stem, e.g. "customer_event"
    version: Path  # the released version in schemas/history/
    direction: Direction
    kinds: tuple[str, ...]  # avro's SchemaIncompatibilityType names
    messages: tuple[str, ...]
    locations: tuple[str, ...]  # JSON-pointer-like paths into the reader schema

    def __str__(self) -> str:
        return (
            f"{self.schema} vs {self.version.name} ({self.direction}): "
            f"{', '.join(self.kinds)} at {', '.join(self.locations)}: {'; '.join(self.messages)}"
        )


def parse(path: Path) -> avro.schema.Schema:
    """One schema file, parsed by Apache avro (which checks names and types as it goes)."""
    try:
        return avro.schema.parse(path.read_text())
    except (OSError, avro.errors.AvroException) as exc:
        raise SchemaError(f"{path}: not a valid Avro schema: {exc}") from exc


def released_versions(name: str, directory: Path = SCHEMAS_DIR) -> list[Path]:
    """The released versions of one schema, oldest first (``history/<name>/v<N>.avsc``)."""
    versions = (directory / "history" / name).glob("v*.avsc")
    return sorted(versions, key=lambda p: int(p.stem[1:]) if p.stem[1:].isdigit() else -1)


def incompatibility(
    reader: avro.schema.Schema, writer: avro.schema.Schema
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]] | None:
    """Why ``reader`` cannot read data ``writer`` wrote: (kinds, messages, locations), or None."""
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return None
    kinds = tuple(sorted({kind.value for kind in result.incompatibilities}))
    return kinds, tuple(sorted(result.messages)), tuple(sorted(result.locations - {"/"}))


def check_schema(current: Path, directory: Path = SCHEMAS_DIR) -> list[Incompatibility]:
    """Every way ``current`` breaks with a released version of it, in both directions."""
    name = current.stem
    new = parse(current)
    problems: list[Incompatibility] = []
    for version in released_versions(name, directory):
        old = parse(version)
        pairs = ((Direction.BACKWARD, new, old), (Direction.FORWARD, old, new))
        for direction, reader, writer in pairs:
            found = incompatibility(reader, writer)
            if found is not None:
                problems.append(Incompatibility(name, version, direction, *found))
    return problems


def check_all(directory: Path = SCHEMAS_DIR) -> list[Incompatibility]:
    """The evolution check CI runs: every current schema against all of its released versions."""
    return [problem for path in sorted(directory.glob("*.avsc")) for problem in check_schema(path, directory)]
