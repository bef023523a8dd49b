"""sam_bench: a benchmarking harness for SAM 2 settings, model sizes and data."""

__version__ = "0.1.0"

#: Version of the layout of ``result.json`` (bump on any incompatible change).
SCHEMA_VERSION = 3
