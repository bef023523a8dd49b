"""Model runtimes (``model.runtime``): :mod:`sam_bench.models.runtimes.base` is the contract;
``eager``, ``compile`` and ``bf16`` live in :mod:`~sam_bench.models.runtimes.torch_runtimes`,
``onnxruntime`` in ``onnx.py`` and ``transformers`` in ``transformers.py`` (the ``runtimes``
extra); :mod:`~sam_bench.models.runtimes.apply` puts a job's model on its runtime."""
