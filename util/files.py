"""Atomic file writes: readers see the old file or the new one, never a torn one, so a job
killed at any moment (even with SIGKILL) leaves every file it wrote usable."""
import contextlib
import io
import json
import os
from pathlib import Path

import torch


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path next to `path` to write to; it replaces `path` when the block ends
    without an error and is removed otherwise."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path, data):
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path, text):
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path, obj):
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def atomic_torch_save(obj, path):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())
