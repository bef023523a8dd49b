"""Model runtimes (``model.runtime``): :mod:`sam_bench.models.runtimes.base` is the contract."""
