"""The CPU's cache sizes, read from Linux sysfs (what `lscpu` reports)."""
from pathlib import Path

SYSFS_CACHE = Path("/sys/devices/system/cpu/cpu0/cache")
_UNITS = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}


def cache_bytes(level=2, root=SYSFS_CACHE):
    """Bytes of the data or unified cache of `level` that one core (cpu0) sees, or None where
    sysfs does not say (not Linux, or a container that hides it). lscpu's "L2: 2 MiB (2
    instances)" is 1 MiB per core: this returns the 1 MiB."""
    try:
        for index in sorted(Path(root).glob("index*")):
            if int((index / "level").read_text()) != level or (index / "type").read_text().strip() == "Instruction":
                continue
            size = (index / "size").read_text().strip()
            return int(size[:-1]) * _UNITS[size[-1]] if size[-1] in _UNITS else int(size)
    except (OSError, ValueError):
        pass
    return None
