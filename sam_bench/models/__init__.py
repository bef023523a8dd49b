"""Model loading for sam_bench: checkpoint resolution (cache / download / verification) and
building SAM 2 models with pretrained or deterministic random weights."""
