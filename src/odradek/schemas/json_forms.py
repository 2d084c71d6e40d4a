"""What each Arrow type looks like as JSON: what decoding (json_decode.py,
json_records.py) and encoding (json_encode.py) share."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# What a byte stands for in base64 text: its 6-bit value, 64 for the padding "=", -1
# for a byte base64 does not use (RFC 4648, section 4).
BASE64_ALPHABET = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", np.uint8)
BASE64_VALUES = np.full(256, -1, np.int16)
BASE64_VALUES[BASE64_ALPHABET] = np.arange(64)
BASE64_VALUES[ord("=")] = 64

UNIX_EPOCH_DATE = "1970-01-01T"


def is_list_like(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_list(data_type)
        or pa.types.is_large_list(data_type)
        or pa.types.is_fixed_size_list(data_type)
        or pa.types.is_list_view(data_type)
        or pa.types.is_large_list_view(data_type)
    )


def is_binary_like(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(data_type)
        or pa.types.is_large_binary(data_type)
        or pa.types.is_fixed_size_binary(data_type)
        or pa.types.is_binary_view(data_type)
    )


def is_string_like(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(data_type)
        or pa.types.is_large_string(data_type)
        or pa.types.is_string_view(data_type)
    )


def list_parts(array: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """A list array's offsets rebased to zero and the items they address."""
    offsets = array.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    items = array.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    return offsets - offsets[0], items


def times_from_text(text: pa.Array, target: pa.DataType) -> pa.Array:
    """``HH:MM:SS[.fraction]`` strings as a time type, read as a time on the epoch day."""
    on_epoch_day = pc.binary_join_element_wise(UNIX_EPOCH_DATE, text, "")
    instants = on_epoch_day.cast(pa.timestamp(target.unit))
    ticks = instants.cast(pa.int64())
    int_type = pa.int32() if pa.types.is_time32(target) else pa.int64()
    return ticks.cast(int_type).cast(target)
