"""glibc malloc settings for the shipper process: keep freed buffers instead of returning them.

Every read chunk allocates a few buffers of 0.2-1 MB (the chunk, aiokafka's batch buffer and its
copies, the compressed batch) and frees them soon after. With glibc's defaults those sizes are
mmap'ed or trimmed off the heap on free, so each chunk faults its pages in again: ~260,000 page
faults and ~0.7 s of kernel time per 128 MiB shipped, a fifth of the shipper's CPU. Raising the
mmap threshold and the trim threshold keeps that memory in the heap for the next chunk; peak RSS
stays the same (the in-flight budget bounds what is live).
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 8 << 20  # allocations below this come from the heap
TRIM_THRESHOLD = 32 << 20  # free memory at the top of the heap kept up to this


def keep_freed_buffers() -> bool:
    """Apply the settings (glibc only; elsewhere a no-op). True when applied."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    log.debug("malloc thresholds %s", "set" if ok else "refused")
    return ok
