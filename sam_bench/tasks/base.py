"""What a task is: its declaration (:class:`TaskSpec`) and the hooks the shared runner loop
(:mod:`sam_bench.loop`) calls.

A task is a module plus its configs. It declares which metrics it reports (catalogue names),
its headline columns, default objective and Pareto axes, its timing stages, the ground truth it
needs and the config sections that identify one of its configurations; it supplies the model
call (:meth:`Task.predict`) and its evaluators (:meth:`Task.evaluator`). Everything around it
-- loading, conversion, warm-up, timers, GPU peak and RSS, per-item errors, progress, marginal
time, records, tracking, summary and report -- is shared.

One :class:`Task` object serves a *group* of jobs that share computation (the jobs its
:meth:`Task.group_key` maps to the same key); ``predict`` returns one prediction per job.

**The contract.** A task overrides at most these eight methods (defaults here, the only place
they are written): :meth:`Task.identity_settings`, :meth:`Task.group_key`,
:meth:`Task.check`, :meth:`Task.build_model`, :meth:`Task.evaluator_for`,
:meth:`Task.prepare`, :meth:`Task.predict` (required) and :meth:`Task.warmup`. It declares the
rest as data: :attr:`Task.spec` (metrics, stages, settings sections, outputs) and
:attr:`Task.writer`, the :class:`Writer` that writes a job's declared outputs and reads them
back (kept apart from the evaluators, as detectron2 keeps its ``EventWriter`` s apart from its
``DatasetEvaluator`` s). Resources a task must release register with :meth:`Task.on_close`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from sam_bench.config import Config
from sam_bench.data.base import Dataset, ImageRef, Sample
from sam_bench.errors import ConfigError
from sam_bench.layout import JobLayout, Output
from sam_bench.metrics.base import Evaluator
from sam_bench.metrics.catalogue import CATALOGUE
from sam_bench.metrics.cost import StageTimes

if TYPE_CHECKING:  # a task's class and spec are read without torch (dry runs, reports)
    import torch

    from sam_bench.models.agreement import AgreementCase
    from sam_bench.models.build import WeightsInfo


@dataclass(frozen=True)
class TaskSpec:
    """A task's declaration (recorded in every ``result.json`` as ``task_spec``)."""

    name: str
    """``task.name`` value."""
    metrics: tuple[str, ...]
    """Catalogue names of the task's own metrics, in display order (cost metrics of the runner
    are added to every task)."""
    headline: tuple[str, ...]
    """Columns of the console table and the report's main tables."""
    objective: str
    """Default ``objective.metric``."""
    pareto: tuple[str, str]
    """(cost metric on x, accuracy metric on y) of the Pareto front."""
    stages: tuple[str, ...] = ("preprocess", "encoder", "decoder", "postprocess")
    """Timed stages in order; the runner adds ``metrics``. ``latency_ms`` sums them."""
    own_stages: tuple[str, ...] = ("postprocess",)
    """Stages each job of a group pays alone (the others are shared: ``marginal_ms``)."""
    needs: str = "instances"
    """Ground truth the task scores against: ``instances``, ``semantic`` or ``video``."""
    sections: tuple[str, ...] = ()
    """Config sections of the task's own settings (``amg``, ``prompt``...): they identify a
    configuration (``config_id``) together with model, preprocessing and dtype."""
    uses_engine: bool = False
    """Whether the ``engine`` setting applies (and so enters ``config_id``)."""
    encoder_cache: bool = False
    """Whether the task restores image-encoder outputs from ``cache.dir`` (with
    :attr:`uses_engine`: for ``engine=fast`` only); a sweep then shares one encoder pass per
    image across its groups (``cache.in_sweep``)."""
    per_s: str = "images_per_s"
    """Name of the throughput metric (items per second)."""
    model: bool = True
    """Whether the runner builds the SAM 2 model for it (``ctx.model``)."""
    described: tuple[str, ...] = ()
    """Settings sections whose ``describe()`` makes the task's part of the dry-run line (empty:
    :attr:`sections`); a task leaves out a section it shares with another task, whose words
    are that task's."""
    empty_when: tuple[str, float] | None = None
    """``(metric, value)``: the job predicted nothing on any item when ``metric`` equals
    ``value`` (no mask on every image, every pixel unlabelled...); the console, the summary
    table and the report then warn, naming :attr:`empty_hint`. ``None``: the task always
    predicts something."""
    empty_hint: str = ""
    """The likely causes of an empty result, for the warning (settings to look at)."""
    outputs: tuple[Output, ...] = ()
    """The files a job of the task may write besides the runner's own
    (:data:`sam_bench.layout.RUNNER_OUTPUTS`), each with its kind; ``result.json`` lists the
    ones a job wrote (``outputs``), and the regression check, the report and MLflow find
    files only through them."""

    def __post_init__(self) -> None:
        names = [o.name for o in self.outputs]
        if len(set(names)) != len(names):
            raise ValueError(f"task {self.name}: output names repeat: {names}")

    def check_catalogue(self) -> None:
        """Every metric the spec names must be declared (a typo fails at once)."""
        empty = [self.empty_when[0]] if self.empty_when else []
        for name in {*self.metrics, *self.headline, self.objective, *self.pareto, *empty}:
            CATALOGUE.require(name)

    def catalogue_names(self) -> list[str]:
        """Every metric a job of this task may report: its own, the stages' and the runner's
        (the catalogue snapshot a record carries even when the job fails early)."""
        runner = [
            "latency_ms_mean", "latency_ms_p50", "latency_ms_p90", self.per_s,
            *(f"{s}_ms_mean" for s in (*self.stages, "metrics")), "marginal_ms_mean",
            "peak_gpu_mem_mb", "peak_gpu_reserved_mb", "peak_rss_mb", "model_build_s",
            "n_items_ok", "n_item_errors", "objective",
        ]  # fmt: skip
        names = [*self.metrics, *self.headline, *self.pareto, self.objective, *runner]
        return list(dict.fromkeys(names))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["outputs"] = [o.to_dict() for o in self.outputs]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass
class JobContext:
    """Everything a task needs for one job (built by :mod:`sam_bench.run`)."""

    cfg: Config
    device: torch.device
    model: torch.nn.Module | None
    """The SAM 2 model; ``None`` when the job scores existing predictions."""
    weights: WeightsInfo | None
    dataset: Dataset
    refs: list[ImageRef]
    job_dir: Path
    cache_dir: Path | None = None
    """The validated, absolute ``cache.dir`` (encoder cache); ``None``: off."""
    resources: dict[str, Any] = field(default_factory=dict)
    """What the task shares with the job's :class:`Writer` while the group runs (its engine,
    its encoder cache: facts the writer records in ``task_info``); the task removes them when
    it closes (:meth:`Task.on_close`)."""

    @property
    def layout(self) -> JobLayout:
        """The job folder's files (:mod:`sam_bench.layout`)."""
        return JobLayout(self.job_dir)


class Writer:
    """Writes one job's declared outputs (:attr:`TaskSpec.outputs`) and reads them back.

    One writer per job. ``live`` is ``False`` when the job scores saved predictions
    (``predictions=PATH``): nothing was predicted, so only the files that follow from the
    scores are written. The loop calls, per item, :meth:`item` (or :meth:`restore` for an item
    reused from the journal) and :meth:`encode`; at the end :meth:`finish` then
    :meth:`figures`, both given the job's evaluator after every item.
    """

    def __init__(self, ctx: JobContext, *, live: bool = True) -> None:
        self.ctx = ctx
        self.live = live

    @property
    def layout(self) -> JobLayout:
        return self.ctx.layout

    def item(self, sample: Sample, inputs: Any, prediction: Any, saved: int) -> bool:
        """Write the item's files (``saved`` items were kept as examples before); returns
        whether this item was kept as an example (``task.save_masks``)."""
        return False

    def encode(self, prediction: Any) -> Any:
        """The prediction as JSON for the job's journal, so a resumed job reuses the item
        (:mod:`sam_bench.resume`); ``None`` (the default): items are computed again."""
        return None

    def decode(self, data: Any) -> Any:
        """The prediction :meth:`encode` wrote (scored again by the evaluator on resume)."""
        raise NotImplementedError

    def restore(self, sample: Sample, prediction: Any) -> None:
        """A reused item: account for it in dataset-level outputs (e.g. add its masks to
        ``predictions.json``); its example files were written by the earlier run."""
        return None

    def finish(self, evaluator: Evaluator) -> dict[str, Any]:
        """Write the dataset-level outputs; returns the job's ``task_info`` entries."""
        return {}

    def figures(self, evaluator: Evaluator) -> list[dict[str, str]]:
        """Figures drawn for the job (``[{path, caption}]``, paths relative to the job folder;
        called after :meth:`finish`): recorded as ``figures`` and shown by the sweep report."""
        return []

    @classmethod
    def read(cls, path: Path, dataset: Dataset) -> Any:
        """A source of saved predictions (``predictions=PATH``): an object with ``get(ref) ->
        prediction`` and ``info() -> dict``. Writers whose outputs cannot be scored again keep
        this default."""
        raise ConfigError("predictions", "this task cannot score saved predictions")


@dataclass
class TaskResult:
    """What the runner loop measured for one job."""

    rows: list[dict[str, Any]]
    """One row per item (``per_image.csv``), with an ``error`` column."""
    metrics: dict[str, float]
    """Aggregate metrics (``result.json`` ``metrics``, summary columns)."""
    item_errors: list[dict[str, str]] = field(default_factory=list)
    """``{image_id, path, error}`` for every item that could not be processed."""
    info: dict[str, Any] = field(default_factory=dict)
    """Task-specific facts recorded as ``task_info``."""
    figures: list[dict[str, str]] = field(default_factory=list)
    """Figures the task drew for the job (``[{path, caption}]``, relative to the job dir)."""


class Task:
    """Base class of the benchmark tasks: subclasses set :attr:`spec` (and :attr:`writer`)
    and implement :meth:`evaluator_for` and :meth:`predict` (see the module docstring for the
    contract)."""

    spec: ClassVar[TaskSpec]
    writer: ClassVar[type[Writer]] = Writer
    """The :class:`Writer` of the task's declared outputs (the default writes nothing)."""
    measures_cost: ClassVar[bool] = True
    """Whether the model call is measured: ``False`` for a job scoring saved predictions,
    whose per-item rows then carry no stage times, ``marginal_ms`` or GPU peak."""

    def __init__(self, jobs: list[JobContext]) -> None:
        if not jobs:
            raise ValueError("a task needs at least one job")
        self.jobs = jobs
        self.lead = jobs[0]
        self._closers: list[Callable[[], None]] = []

    # ===================================================================== the contract

    @classmethod
    def identity_settings(cls, config: dict[str, Any]) -> dict[str, Any]:
        """The task's own settings that identify a configuration (the ``sections`` of its
        ``config_identity``), from the job's resolved config as plain containers. Default:
        each of :attr:`TaskSpec.sections` without its preset label. A task overrides it to
        leave out settings that cannot change what a job measures (output options, settings
        of another mode), to write a default (``null``) as the value it stands for, and to
        name an input file by its content (:func:`~sam_bench.identity.content_digest`),
        never by its path."""
        from sam_bench.identity import section_settings

        return section_settings(config, cls.spec.sections)

    @classmethod
    def group_key(cls, config: dict[str, Any]) -> dict[str, Any] | None:
        """Which jobs of a sweep can be computed together: return ``config`` (the job's
        resolved config without per-job output settings) reduced to what must be equal, or
        ``None`` when the job always runs alone (the default)."""
        return None

    @classmethod
    def check(cls, cfg: Config, dataset: Dataset | None = None) -> None:
        """Task-level validation before any model is built (the dataset must provide what the
        task needs). Raises :class:`ConfigError`."""
        if dataset is not None and cls.spec.needs not in getattr(dataset, "provides", ()):
            raise ConfigError(
                "dataset.format",
                f"task {cls.spec.name} needs {cls.spec.needs} ground truth; dataset.format="
                f"{cfg.dataset.format} provides {', '.join(dataset.provides) or 'nothing'}",
            )

    @classmethod
    def preload(cls, cfg: Config) -> tuple[str, ...]:
        """Modules a job of ``cfg`` imports once the task is created or scores (SciPy, its
        engine): the runner imports them right before the model is built, where nothing is
        measured and a single run waits for its MLflow helper anyway, instead of after the
        build. Default: none."""
        return ()

    @classmethod
    def build_model(cls, cfg: Config, device: torch.device) -> tuple[torch.nn.Module, WeightsInfo]:
        """The model the group's jobs share (called once per group, timed as
        ``model_build_s``, only when :attr:`TaskSpec.model`). Default: the SAM 2 image model
        of ``cfg.model`` with its weights."""
        from sam_bench.models.build import build_model

        return build_model(cfg.model, device, cfg.seed, progress=cfg.progress)

    @classmethod
    def evaluator_for(cls, ctx: JobContext, *, live: bool = True) -> Evaluator:
        """A fresh evaluator for job ``ctx`` (never needs the model, so saved predictions are
        scored by the same evaluators; ``live=False`` when they are)."""
        raise NotImplementedError

    def prepare(self, sample: Sample) -> tuple[Any, list[str]]:
        """The model input of an item and the conversion steps taken (timed as
        ``preprocess``). Default: the image converted by ``preprocess`` settings. An input
        that is not an image array may describe itself in the per-item row with a
        ``describe() -> dict`` method."""
        from sam_bench.preprocess import to_model_input

        if sample.raw is None:
            raise ValueError(f"item {sample.ref.image_id} has no image")
        return to_model_input(sample.raw, self.lead.cfg.preprocess)

    def predict(self, sample: Sample, inputs: Any, times: list[StageTimes]) -> list[Any]:
        """One prediction per job of the group; ``times[j]`` receives job j's stage times
        (shared stages in full)."""
        raise NotImplementedError

    @classmethod
    def agreement_case(cls, cfg: Config, sample: Sample) -> AgreementCase | None:
        """The image and prompts on which a job on a ``model.runtime`` other than ``eager`` is
        compared with eager (:mod:`sam_bench.models.agreement`; ``None``: this item is not
        compared). Default: the converted image with a point grid
        (:func:`~sam_bench.models.agreement.grid_case`)."""
        from sam_bench.models.agreement import grid_case
        from sam_bench.preprocess import to_model_input

        if sample.raw is None:
            return None
        image, _ = to_model_input(sample.raw, cfg.preprocess)
        return grid_case(image)

    def warmup(self, sample: Sample, inputs: Any) -> dict[str, Any] | None:
        """The untimed warm-up pass (default: one prediction, discarded). What it returns
        (e.g. compilation it did) goes to ``task_info.warmup``."""
        self.predict(sample, inputs, [StageTimes.of(self.spec.stages) for _ in self.jobs])
        return None

    # ===================================================================== shared, not hooks

    @classmethod
    def identity(
        cls, config: dict[str, Any], *, data: str | None, weights: str | None
    ) -> dict[str, Any]:
        """The job's identity document (:mod:`sam_bench.identity`); ``config_id`` hashes it.
        ``data``: the dataset fingerprint; ``weights``: the weights hash (or a scored
        predictions file's sha256), ``None`` while unknown."""
        from sam_bench.identity import config_identity

        return config_identity(
            config,
            task=cls.spec.name,
            settings=cls.identity_settings(config),
            uses_engine=cls.spec.uses_engine and not config.get("predictions"),
            data=data,
            weights=weights,
        )

    @classmethod
    def describe(cls, cfg: Config) -> str:
        """A few words on the job's own settings (what ``dry_run`` prints): ``engine`` when it
        applies, then each settings section's ``describe()`` where the section has one (given
        the job's config when it takes an argument: words that need another section)."""
        parts = [f"engine={cfg.engine}"] if cls.spec.uses_engine else []
        for section in cls.spec.described or cls.spec.sections:
            text = getattr(getattr(cfg, section, None), "describe", None)
            if callable(text):
                takes_cfg = bool(inspect.signature(text).parameters)
                parts.append(str(text(cfg) if takes_cfg else text()))
        return " ".join(parts)

    @classmethod
    def read_predictions(cls, path: Path, dataset: Dataset) -> Any:
        """The saved predictions at ``path`` (``predictions=PATH``), read by the task's
        writer (:meth:`Writer.read`)."""
        return cls.writer.read(path, dataset)

    def describe_input(self, sample: Sample, inputs: Any) -> dict[str, Any]:
        """Columns of the per-item row that describe the input (size, storage)."""
        describe = getattr(inputs, "describe", None)
        if callable(describe) and not isinstance(inputs, np.ndarray):
            return dict(describe())
        if isinstance(inputs, np.ndarray) and sample.raw is not None:
            return {
                "height": int(inputs.shape[0]),
                "width": int(inputs.shape[1]),
                "stored_as": sample.raw.mode,
            }
        return {}

    def evaluator(self, job: int) -> Evaluator:
        """A fresh evaluator for job ``job`` of the group."""
        return self.evaluator_for(self.jobs[job], live=True)

    def make_writer(self, job: int) -> Writer:
        """The writer of job ``job``'s outputs."""
        return self.writer(self.jobs[job], live=True)

    def on_close(self, closer: Callable[[], None]) -> None:
        """Call ``closer`` (release an engine, a cache, a model...) when the task closes."""
        self._closers.append(closer)

    def close(self) -> None:
        """Release what the task registered (:meth:`on_close`) and drop references to models
        and caches (the runner frees memory after this)."""
        closers, self._closers = self._closers, []
        for closer in reversed(closers):
            closer()
        self.jobs = []
