"""Stand-alone tools, run from the repository root as `python -m scripts.NAME` (see README).
They may import anything in the repository; nothing imports them."""
