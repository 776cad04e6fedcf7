"""The in-process software backend: the embedded default."""
