"""Utilities shared by the scripts: errors, atomic files, CLI helpers, analysis tools."""
