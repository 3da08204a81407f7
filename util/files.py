"""Atomic file writes: readers see the old file or the new one, never a torn one, so a job
killed at any moment (even with SIGKILL) leaves every file it wrote usable."""
import io
import json
import os
from pathlib import Path

import torch


def atomic_write_bytes(path, data):
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def atomic_write_text(path, text):
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path, obj):
    return atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def atomic_torch_save(obj, path):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())
