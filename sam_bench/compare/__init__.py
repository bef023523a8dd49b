"""The regression check: ``python -m sam_bench.compare BASELINE CURRENT`` (also
``python -m sam_bench.report compare BASELINE CURRENT``). Reads records and declared outputs
only: no task, model or engine code (torch, sam2) is imported.

The modules, in the order the data flows through them:

* :mod:`~sam_bench.compare.jobs` -- a side's jobs (record + job folder) and
  :class:`~sam_bench.compare.jobs.CompareError`;
* :mod:`~sam_bench.compare.sources` reads a side: a sweep directory or a ``summary.csv`` (with
  the job folders beside it when present); :mod:`~sam_bench.compare.mlflow_source` an MLflow
  parent run;
* :mod:`~sam_bench.compare.matching` pairs configurations by ``config_id`` (then by resolved
  settings), never by job number;
* :mod:`~sam_bench.compare.fairness` lists what differs between the sides (dataset, weights,
  model, device, dtype stop the comparison; engine, versions and hardware are context);
* :mod:`~sam_bench.compare.tolerances` reads ``conf/regression/default.yaml`` and the
  command-line overrides;
* :mod:`~sam_bench.compare.judge` gives each metric its verdict, timing and memory from the
  per-image figures with :mod:`~sam_bench.compare.stats` (a seeded paired bootstrap of the
  ratio);
* :mod:`~sam_bench.compare.declared` finds each side's declared prediction outputs and runs,
  per output kind, its comparer (:mod:`~sam_bench.compare.comparers`: ``instance_rle``,
  ``label_png``, ``palette_png_sequence``); what cannot be compared is named (exit 3);
* :mod:`~sam_bench.compare.comparison` puts these together for two loaded sides;
* :mod:`~sam_bench.compare.output` writes ``regression.md``, ``regression.html``,
  ``regression.json`` and the plots (:mod:`~sam_bench.compare.plots`);
* :mod:`~sam_bench.compare.cli` is the command.
"""
