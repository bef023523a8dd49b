"""sam_bench's Hydra launcher plugin (``hydra/launcher=sam_bench``, the default)."""
