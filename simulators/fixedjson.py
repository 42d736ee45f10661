"""Vectorised JSON: build N objects of equal byte width as one numpy byte matrix.

A simulator page holds up to 150,000 values; formatting them one Python object at a time costs
more than the client needs to parse them, and the benchmark measures the client. Here every field
becomes an ``(n, width)`` byte block (numbers right-aligned, strings padded after their closing
quote: JSON allows whitespace between tokens), literal key text is broadcast between the blocks,
and one ``tobytes()`` yields the array's text.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Block = npt.NDArray[np.uint8]
_ZERO, _SPACE, _MINUS, _DOT, _QUOTE = 48, 32, 45, 46, 34


def literal(text: str, n: int) -> Block:
    """``text`` repeated on ``n`` rows (a read-only broadcast view)."""
    raw = np.frombuffer(text.encode(), dtype=np.uint8)
    return np.broadcast_to(raw, (n, len(raw)))


def number_block(ints: npt.NDArray[np.int64], decimals: int) -> Block:
    """``ints / 10**decimals`` printed exactly with ``decimals`` places, right-aligned."""
    n = len(ints)
    scale = 10**decimals
    negative = ints < 0
    magnitude = np.abs(ints)
    whole = magnitude // scale
    frac = magnitude % scale
    whole_digits = np.ones(n, dtype=np.int64)
    if n:
        limit = 10
        while (big := whole >= limit).any():
            whole_digits[big] += 1
            limit *= 10
    width_whole = int(whole_digits.max()) + 1 if n else 2  # one column for a sign
    width = width_whole + (decimals + 1 if decimals else 0)
    out = np.full((n, width), _SPACE, dtype=np.uint8)
    rows = np.arange(n)
    place = whole.copy()
    for col in range(width_whole - 1, 0, -1):
        used = whole_digits > (width_whole - 1 - col)
        out[used, col] = (place[used] % 10 + _ZERO).astype(np.uint8)
        place //= 10
    sign_col = width_whole - 1 - whole_digits
    out[rows[negative], sign_col[negative]] = _MINUS
    if decimals:
        out[:, width_whole] = _DOT
        place = frac.copy()
        for col in range(width - 1, width_whole, -1):
            out[:, col] = (place % 10 + _ZERO).astype(np.uint8)
            place //= 10
    return out


def string_block(texts: Sequence[str]) -> Block:
    """Each text as a quoted JSON string, padded with spaces after the quote (ASCII texts)."""
    n = len(texts)
    if n == 0:
        return np.zeros((0, 2), dtype=np.uint8)
    encoded = np.array([t.encode("ascii") for t in texts])
    width = encoded.dtype.itemsize
    body = encoded.view(np.uint8).reshape(n, width)
    lengths = np.char.str_len(encoded)
    out = np.full((n, width + 2), _SPACE, dtype=np.uint8)
    out[:, 0] = _QUOTE
    out[:, 1 : width + 1] = np.where(body == 0, _SPACE, body)
    out[np.arange(n), lengths + 1] = _QUOTE
    return out


def bool_block(flags: npt.NDArray[np.bool_]) -> Block:
    """``true `` / ``false`` per row."""
    out = np.empty((len(flags), 5), dtype=np.uint8)
    out[:] = np.frombuffer(b"false", dtype=np.uint8)
    out[flags] = np.frombuffer(b"true ", dtype=np.uint8)
    return out


def timestamp_block(timestamps_us: npt.NDArray[np.int64]) -> Block:
    """Quoted ISO-8601 UTC times ``"YYYY-MM-DDTHH:MM:SSZ"`` (with ``.ffffff`` if any needs it)."""
    n = len(timestamps_us)
    micros = timestamps_us % 1_000_000
    with_fraction = bool(n) and bool((micros != 0).any())
    seconds = timestamps_us // 1_000_000
    days = seconds // 86_400
    second_of_day = seconds - days * 86_400
    day = days.astype("datetime64[D]")
    month_start = day.astype("datetime64[M]")
    year = day.astype("datetime64[Y]").astype(np.int64) + 1970
    month = month_start.astype(np.int64) % 12 + 1
    dom = (day - month_start).astype(np.int64) + 1
    fields: list[tuple[npt.NDArray[np.int64], int]] = [
        (year, 4),
        (month, 2),
        (dom, 2),
        (second_of_day // 3600, 2),
        (second_of_day % 3600 // 60, 2),
        (second_of_day % 60, 2),
    ]
    text = '"0000-00-00T00:00:00' + (".000000" if with_fraction else "") + 'Z"'
    out = np.empty((n, len(text)), dtype=np.uint8)
    out[:] = np.frombuffer(text.encode(), dtype=np.uint8)
    starts = [1, 6, 9, 12, 15, 18]
    if with_fraction:
        fields.append((micros, 6))
        starts.append(21)
    for (value, width), start in zip(fields, starts, strict=True):
        place = value.copy()
        for col in range(start + width - 1, start - 1, -1):
            out[:, col] = (place % 10 + _ZERO).astype(np.uint8)
            place //= 10
    return out


def rows(parts: Sequence[Block], separator: bytes = b",") -> bytes:
    """Concatenate the blocks side by side into rows and the rows into ``row,row,...,row``."""
    if not parts or len(parts[0]) == 0:
        return b""
    n = len(parts[0])
    sep = literal(separator.decode(), n)
    matrix = np.hstack([*parts, sep])
    return matrix.tobytes()[: -len(separator)]


def timestamp_strings(timestamps_us: npt.NDArray[np.int64]) -> list[str]:
    """The same ISO-8601 texts as :func:`timestamp_block`, unquoted, as Python strings."""
    block = timestamp_block(timestamps_us)
    width = block.shape[1] - 2
    text = np.ascontiguousarray(block[:, 1:-1]).tobytes().decode("ascii")
    return [text[i : i + width] for i in range(0, len(text), width)]
