"""Turning loosely typed JSON values into the Avro field types, or a ValidationError naming the field.

Clients send ids as numbers, builds as ints, prices as numeric strings. What converts
without losing meaning is converted (123 -> "123", "12.50" -> 12.5, 2.0 -> 2); what does
not is an ``invalid_field`` error carrying the JSON path, so the client and the dead
letter both say exactly which field was wrong. Booleans are never numbers or strings here:
``true`` as a price is a tracking bug, not a value.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from pipeline.errors import ValidationError

INT_MIN, INT_MAX = -(2**31), 2**31 - 1


def invalid(path: str, expected: str, value: Any) -> ValidationError:
    shown = json.dumps(value, default=str)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return ValidationError("invalid_field", f"{path}: expected {expected}, got {shown}")


def as_str(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return json.dumps(value)  # 123 -> "123", 1.5 -> "1.5"
    raise invalid(path, "a string", value)


def as_float(value: Any, path: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise invalid(path, "a number", value)
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an int past 1.8e308
            raise invalid(path, "a finite number", value) from None
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise invalid(path, "a number", value) from None
    else:
        raise invalid(path, "a number", value)
    if not math.isfinite(number):
        raise invalid(path, "a finite number", value)
    return number


def as_int(value: Any, path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise invalid(path, "an integer", value)
    if isinstance(value, int):
        number = value
    else:
        as_number = as_float(value, path)
        assert as_number is not None
        if not as_number.is_integer():
            raise invalid(path, "an integer", value)
        number = int(as_number)
    if not INT_MIN <= number <= INT_MAX:
        raise invalid(path, "a 32-bit integer", value)
    return number


def as_bool(value: Any, path: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise invalid(path, "true or false", value)


def as_dict(value: Any, path: str) -> dict[str, Any]:
    """An optional JSON object; null and absent read as empty."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise invalid(path, "an object", value)


def as_timestamp(value: Any, path: str) -> datetime | None:
    """ISO-8601 (Segment's format) to an aware UTC datetime, cut to the millisecond Avro keeps.

    A time without offset is read as UTC, as Segment does.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError("invalid_timestamp", f"{path}: expected an ISO-8601 string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value.strip())
        parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # overflow: year 1 or 9999 shifted out of range
        raise ValidationError("invalid_timestamp", f"{path}: not an ISO-8601 time: {value[:60]!r}") from None
    return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)


def to_json(value: Any) -> str:
    """How a value the model does not type is kept in a string map."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
