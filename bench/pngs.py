"""Incompressible PNGs of a chosen byte size, for provider answers and reference uploads.

Random RGB noise stored without compression, so the file size is predictable from the pixel
count (3 bytes a pixel + 1 filter byte a row) and nothing on the way (zlib, S3) shrinks it.
The result is a real PNG: Pillow decodes it fully.
"""

import io
import math
import os

from PIL import Image

# zlib stored-block headers (5 bytes per 64 KiB), IDAT chunk headers and the IHDR/IEND chunks.
_OVERHEAD_PER_BYTE = 5 / 65535 + 12 / 65536
_FIXED_OVERHEAD = 1024


def side_for(target_bytes: int) -> int:
    """The largest square side whose stored PNG stays at or under `target_bytes`."""
    budget = (target_bytes - _FIXED_OVERHEAD) / (1 + _OVERHEAD_PER_BYTE)
    return max(16, int((-1 + math.sqrt(1 + 12 * budget)) / 6))


def noise_png(target_bytes: int) -> bytes:
    """A square RGB noise PNG of at most (and close to) `target_bytes` bytes."""
    side = side_for(target_bytes)
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=0)
    return out.getvalue()
