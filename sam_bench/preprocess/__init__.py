"""Turn stored pixels (:class:`~sam_bench.data.base.RawImage`) into SAM 2's HxWx3 uint8 RGB input.

Every option of :class:`~sam_bench.config.PreprocessConfig` is implemented in
:mod:`sam_bench.preprocess.convert`; each step taken is returned so it can be recorded.
"""

from sam_bench.preprocess.convert import to_model_input

__all__ = ["to_model_input"]
