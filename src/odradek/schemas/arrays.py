"""NumPy views of Arrow arrays' buffers, shared by the vectorized codecs."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def offsets_and_data(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The value offsets (int64, one more than elements) and the data bytes of a binary
    or string array (large or not), as views of its buffers: no bytes are copied."""
    wide = pa.types.is_large_binary(values.type) or pa.types.is_large_string(values.type)
    buffers = values.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64 if wide else np.int32)
    offsets = offsets[values.offset : values.offset + len(values) + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    return offsets.astype(np.int64), data
