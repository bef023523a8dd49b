"""Regression comparison of two sweeps: ``python -m sam_bench.report compare BASELINE CURRENT``.

The pieces, in the order the comparison uses them (the command itself is
:mod:`sam_bench.report.regression`):

* :mod:`~sam_bench.report.compare.sources` reads a side: a sweep directory, a ``summary.csv``
  (with the job folders beside it when present) or an MLflow parent run;
* :mod:`~sam_bench.report.compare.matching` pairs configurations by ``config_id`` (then by
  resolved settings), never by job number;
* :mod:`~sam_bench.report.compare.fairness` lists what differs between the sides (dataset,
  weights, model, device, dtype stop the comparison; engine, versions and hardware are
  context);
* :mod:`~sam_bench.report.compare.tolerances` reads ``conf/regression/default.yaml`` and the
  command-line overrides;
* :mod:`~sam_bench.report.compare.judge` gives each metric its verdict, timing and memory
  from the per-image figures with :mod:`~sam_bench.report.compare.stats` (a seeded paired
  bootstrap of the ratio);
* :mod:`~sam_bench.report.compare.masks` compares saved masks (``predictions.json``; DAVIS PNG
  folders ``predictions/`` for video);
* :mod:`~sam_bench.report.compare.output` writes ``regression.md``, ``regression.html``,
  ``regression.json`` and the plots.

Like every report module, none of these imports model code (torch, sam2).
"""
