"""Typed configuration: dataclass schemas registered in Hydra's ConfigStore.

The YAML files under ``conf/`` extend these schemas, so a misspelled key fails at composition
time, and :meth:`__post_init__` range checks run when the composed config is turned into
objects (:func:`to_typed`), before any model is built. Every field is documented where it is
declared; ``docs`` of a field are what the README's config table shows.
"""

from __future__ import annotations

import copy
import functools
import math
import re
from dataclasses import dataclass, field, fields, is_dataclass, make_dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf, open_dict, read_write

from sam_bench import registry
from sam_bench.errors import ConfigError

# --------------------------------------------------------------------------------------------
# helpers


def check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value == MISSING:  # not yet composed (schema defaults); required keys fail at compose
        return
    if value not in choices:
        raise ConfigError(key, f"{value!r} is not one of {', '.join(choices)}")


def check_min(key: str, value: float | None, low: float, *, strict: bool = False) -> None:
    if value is None:
        return
    if (value <= low) if strict else (value < low):
        op = ">" if strict else ">="
        raise ConfigError(key, f"must be {op} {low}, got {value}")


def check_unit(key: str, value: float | None) -> None:
    if value is None:
        return
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise ConfigError(key, f"must be in [0, 1], got {value}")


# --------------------------------------------------------------------------------------------
# model/


WEIGHTS_CHOICES = ("pretrained", "random", "auto")

_SAM2_SIZES = ("tiny", "small", "base_plus", "large")
#: ``model.family`` -> its ``model.size`` choices.
MODEL_SIZES: dict[str, tuple[str, ...]] = {
    "sam2": _SAM2_SIZES,
    "sam2.1": _SAM2_SIZES,
    "edgetam": ("repvit_m1",),
    "sam3_tracker": ("vit_l",),
}


@dataclass
class ModelConfig:
    """One SAM 2 checkpoint (``conf/model/*.yaml``)."""

    name: str = MISSING
    """Catalog name, e.g. ``sam2.1_hiera_tiny``."""
    family: str = MISSING
    """``sam2`` (July 2024 release) or ``sam2.1`` (September 2024 release); ``edgetam`` or
    ``sam3_tracker``: a family served through Hugging Face ``transformers``
    (:mod:`sam_bench.models.families`; ``checkpoint_file`` / ``checkpoint`` then name a hub id
    or a ``save_pretrained`` folder, ``sam2_config`` the sam2 YAML of the shell it runs in for
    image tasks; ``task=video`` runs the family's transformers video model instead)."""
    size: str = MISSING
    """Backbone size: ``tiny``, ``small``, ``base_plus`` or ``large``; ``repvit_m1`` for
    ``edgetam``, ``vit_l`` for ``sam3_tracker``."""
    sam2_config: str = MISSING
    """sam2's model YAML, relative to the installed ``sam2`` package
    (e.g. ``configs/sam2.1/sam2.1_hiera_t.yaml``)."""
    checkpoint_file: str = MISSING
    """File name of the official checkpoint (``sam2.1_hiera_tiny.pt``)."""
    url: str = MISSING
    """Download URL of the official checkpoint."""
    weights: str = "pretrained"
    """``pretrained`` (official file, required), ``random`` (real architecture, untrained,
    deterministic from ``seed``) or ``auto`` (pretrained when available, else random with a
    banner)."""
    checkpoint: str | None = None
    """Explicit path of a checkpoint file; overrides the cache and the download."""
    sha256: str | None = None
    """Expected sha256 of the checkpoint file; a mismatch is an error. ``null``: not checked
    (the measured hash is recorded either way)."""
    apply_postprocessing: bool = False
    """sam2's ``build_sam2(apply_postprocessing=...)``: dynamic multimask via stability. The
    official AMG examples use ``false``."""
    runtime: str = "eager"
    """What runs the image encoder, prompt encoder and mask decoder (a registered runtime,
    :mod:`sam_bench.models.runtimes`; a sweep axis: ``-m model.runtime=eager,compile,bf16``):

    - ``eager`` (default): sam2's PyTorch modules as built (today's behaviour and config ids);
    - ``compile``: ``torch.compile`` of the three components (not the whole model); exact;
    - ``bf16``: the three components under bf16 autocast, outputs cast back to float32;
      approximate (the documented replacement of the top-level ``dtype=bf16``);
    - ``onnxruntime``: the components exported to ONNX and run by ONNX Runtime; exact;
    - ``transformers``: the Hugging Face port (``Sam2Model``) with the same weights; exact.

    ``onnxruntime`` and ``transformers`` need the ``runtimes`` extra
    (``pip install sam_bench[runtimes]``). Exporting / compiling / converting is timed as
    ``prepare_s``, apart from the timed stages. Any runtime but ``eager`` changes the
    ``config_id`` and records ``agreement_*`` metrics against eager."""
    agreement_items: int = 2
    """With ``runtime`` other than ``eager``: the first N items are also run on an eager copy
    of the model (untimed, after the job) and the ``agreement_*`` metrics compare the two
    (docs/metrics.md). 0: no comparison. Never part of the ``config_id``."""
    runtime_options: dict[str, Any] = field(default_factory=dict)
    """The runtime's own settings, e.g. ``compile``: ``mode`` (``torch.compile`` mode,
    default ``null``), ``dynamic`` (default ``null``), ``backend`` (default ``inductor``);
    ``onnxruntime``: ``opset``, ``providers``; ``transformers``: ``hf_id``. Unknown keys are
    refused by the runtime. Part of the ``config_id`` when set."""
    runtime_cache: str | None = None
    """Folder where runtimes keep exports / conversions (keyed by the weights' hash).
    ``null``: ``$XDG_CACHE_HOME/sam_bench/runtimes`` (``~/.cache/sam_bench/runtimes``). Never
    part of the ``config_id``."""

    def __post_init__(self) -> None:
        check_choice("model.weights", self.weights, WEIGHTS_CHOICES)
        if self.runtime != MISSING:
            registry.check("runtime", self.runtime)
        check_min("model.agreement_items", self.agreement_items, 0)
        if self.runtime_cache is not None and not str(self.runtime_cache).strip():
            raise ConfigError(
                "model.runtime_cache", "must be a folder path or null, got an empty string"
            )
        check_choice("model.family", self.family, tuple(MODEL_SIZES))
        if self.family in MODEL_SIZES:
            check_choice("model.size", self.size, MODEL_SIZES[self.family])


# --------------------------------------------------------------------------------------------
# dataset/ and preprocess/


@dataclass
class DatasetConfig:
    """A labelled dataset (``conf/dataset/*.yaml``). Relative paths are taken from the
    directory the command was launched from."""

    name: str = "synthetic"
    """Name recorded with the results."""
    format: str = "synthetic"
    """A registered format (:mod:`sam_bench.registry`): ``synthetic`` (embedded), ``coco``,
    ``instance_folder`` or ``dsb``; ``davis`` (video sequences, :mod:`sam_bench.data.davis`)."""
    annotations: str | None = None
    """``coco``: instances JSON (polygons or RLE); ``semantic_folder``: optional folder of
    instance-id maps matched by stem (then the instance metrics are reported too);
    ``davis``: another annotation folder laid out like ``Annotations`` (``DIR/<resolution>/
    <sequence>/*.png`` or ``DIR/<sequence>/*.png``), e.g. palette-style copies of DAVIS 2016
    masks; required when ``root`` is a video file (its masks, ``00000.png`` ...)."""
    images: str | None = None
    """``coco``, ``instance_folder``, ``semantic_folder``: image folder."""
    labels: str | None = None
    """``instance_folder``: folder of instance-id PNG/TIFF label maps (0 = background),
    matched to images by file stem; ``semantic_folder``: class-index maps, matched the same
    way."""
    root: str | None = None
    """``dsb``: folder of ``<id>/images/<id>.png`` + ``<id>/masks/*.png``; ``synthetic``:
    another generated dataset (default: the one shipped inside the package); ``davis``: the
    DAVIS folder (``JPEGImages/``, ``Annotations/``, ``ImageSets/``) or one video file."""
    scenes: list[str] | None = None
    """``synthetic``: keep only these scene kinds (``color``, ``gray_lowcontrast``,
    ``dense_small``, ``textured``). ``null``: all."""
    limit: int | None = None
    """Take the first N items in the dataset's stable order (image id / file name /
    sequence name)."""
    external_links: str = "follow"
    """Files whose real location (after symbolic links) is outside the dataset's folder (the
    images / labels folder, the DSB root): ``follow`` reads them; ``skip`` never reads them,
    each image that needs one is an image error with the reason (listed, not silently
    dropped; the fingerprint counts such a file as missing). Either way they are warned about
    (count and examples, ``dataset.warnings`` in ``result.json``). Default ``follow``: datasets
    assembled from links (a flat folder of links to nested originals; DVC, git-annex or
    Hugging Face caches, whose files are links into a store elsewhere) are common and
    legitimate; use ``skip`` for a dataset you do not trust (a link could make sam_bench read,
    and save as ``masks/<id>.png``, any image file the user can read)."""
    # --- video datasets (``davis``) ---
    resolution: str = "480p"
    """``davis``: the resolution folder under ``JPEGImages/`` and ``Annotations/``."""
    year: str = "2017"
    """``davis``: the ``ImageSets/<year>/`` folder ``split`` is read from."""
    split: str | None = None
    """``davis``: read the sequence list ``ImageSets/<year>/<split>.txt`` where present
    (e.g. ``val``); ``null``: every sequence folder."""
    sequences: list[str] | None = None
    """``davis``: keep only these sequences. ``null``: all (after ``split``)."""
    max_frames: int | None = None
    """``davis``: use the first N frames of each sequence. ``null``: all."""
    # --- semantic datasets (``semantic_folder``) ---
    classes: str | None = None
    """``semantic_folder``: class list file, ``<index> <name>`` per line; synonyms that also
    become CLIP prompts follow the name, separated by ``|`` (``3 Road | street | asphalt``);
    ``#`` starts a comment line (:mod:`sam_bench.data.semantic_folder`)."""
    void_index: int | None = None
    """``semantic_folder``: class index ignored everywhere (CamVid's "Unlabelled": 11);
    ``null``: none."""

    def __post_init__(self) -> None:
        if self.format != MISSING:
            registry.check("dataset", self.format)
        check_min("dataset.limit", self.limit, 1)
        check_choice("dataset.external_links", self.external_links, ("follow", "skip"))
        check_min("dataset.max_frames", self.max_frames, 1)
        required = {
            "coco": ("annotations", "images"),
            "instance_folder": ("images", "labels"),
            "dsb": ("root",),
            "davis": ("root",),
            "semantic_folder": ("images", "labels", "classes"),
        }.get(self.format, ())
        for key in required:
            if not getattr(self, key):
                raise ConfigError(f"dataset.{key}", f"is required for dataset.format={self.format}")


@dataclass
class PreprocessConfig:
    """How stored pixels become the HxWx3 uint8 RGB image SAM 2 takes
    (``conf/preprocess/*.yaml``). Every step taken is recorded per image."""

    name: str = "default"
    """Preset name (recorded)."""
    bit_depth: str = "auto"
    """How non-8-bit images (16-bit, 32-bit, float; gray or colour) become 8-bit, linearly,
    one scale for all colour channels:

    - ``auto`` (default): integers are scaled by the range of the smallest of 8, 10, 12, 14,
      16, 24 or 32 bits that holds the image's maximum (the fixed display ranges microscopy
      viewers such as ImageJ offer), so 12-bit data in a 16-bit container (max <= 4095) maps
      0..4095 to 0..255 instead of 0..16; integers with negative values use ``minmax``;
      floats within 0..1 use 0..1, other floats ``minmax``. Decided per image; the choice
      (bits, range, the image's max) is recorded as the conversion step.
    - ``range``: the container's full range (uint16: ``v * 255 / 65535``; floats as 0..1,
      clipped): 12-bit data in 16-bit files come out almost black.
    - ``minmax``: the image's own min..max.
    - ``percentile``: the image's ``percentile_low`` .. ``percentile_high`` (clipped), as
      microscopy tools' auto-contrast does.

    Whatever the choice, a converted image whose 0.5th..99.5th percentile spans under 10% of
    0..255 after every step gets a ``warning: low contrast`` step (logged once per job,
    counted in ``task_info.input_warnings``)."""
    stretch: str = "none"
    """After 8-bit conversion: ``none`` or ``percentile`` (per-channel percentile stretch, for
    low-contrast images)."""
    percentile_low: float = 1.0
    """Lower percentile of the stretch (0-100)."""
    percentile_high: float = 99.0
    """Upper percentile of the stretch (0-100)."""
    color: str = "keep"
    """``keep`` or ``gray`` (convert colour images to luminance first, to study grayscale).
    Grayscale is always replicated to three channels, the only form SAM 2 takes."""
    alpha: str = "drop"
    """Alpha channel: ``drop`` or ``white`` (composite over white)."""
    clahe: bool = False
    """Contrast-limited adaptive histogram equalisation (OpenCV) on the luminance."""
    clahe_clip_limit: float = 2.0
    """CLAHE clip limit."""
    clahe_tile_grid_size: int = 8
    """CLAHE tiles per side."""

    def __post_init__(self) -> None:
        check_choice(
            "preprocess.bit_depth", self.bit_depth, ("auto", "range", "minmax", "percentile")
        )
        check_choice("preprocess.stretch", self.stretch, ("none", "percentile"))
        check_choice("preprocess.color", self.color, ("keep", "gray"))
        check_choice("preprocess.alpha", self.alpha, ("drop", "white"))
        for key in ("percentile_low", "percentile_high"):
            v = getattr(self, key)
            if not 0.0 <= v <= 100.0:
                raise ConfigError(f"preprocess.{key}", f"must be in [0, 100], got {v}")
        if self.percentile_low >= self.percentile_high:
            raise ConfigError(
                "preprocess.percentile_low", "must be lower than preprocess.percentile_high"
            )
        check_min("preprocess.clahe_clip_limit", self.clahe_clip_limit, 0.0, strict=True)
        check_min("preprocess.clahe_tile_grid_size", self.clahe_tile_grid_size, 1)


# --------------------------------------------------------------------------------------------
# task/ and tracking/


@dataclass
class TaskConfig:
    """What is benchmarked (``conf/task/*.yaml``). A task's own settings live in their own
    section (``amg``, ...); see :mod:`sam_bench.tasks`."""

    name: str = "amg"
    """A registered task (:mod:`sam_bench.registry`): ``amg`` (automatic mask generation),
    ``prompted`` (clicks / boxes), ``video`` (mask propagation) or ``semantic`` (AMG + CLIP)."""
    save_masks: int = 4
    """Save the predicted masks of the first N items next to the record (for overlays)."""

    def __post_init__(self) -> None:
        if self.name != MISSING:
            registry.check("task", self.name)
        check_min("task.save_masks", self.save_masks, 0)


@dataclass
class LimitsConfig:
    """Resource limits of one job (``limits.*``): a job stops cleanly with a reason before the
    machine kills it."""

    max_rss_gb: float | None = None
    """Stop the job (status failed, reason recorded) when the process's resident memory
    exceeds this many GB (10**9 bytes), checked before every item, prompt batch and scoring
    and sampled in between; the items it finished stay recorded for ``resume=true``. ``null``:
    no budget. Resident (CPU) memory only: a CUDA allocation failure is retried instead
    (``oom_min_batch``)."""
    oom_min_batch: int = 1
    """Smallest batch an out-of-memory retry goes down to: a prompt batch (AMG's
    ``points_per_batch``) that fails for lack of memory is run again in halves down to this
    size, and the retry is recorded; a batch that fails at this size is an item error. Set it
    to the batch size to turn retries off."""
    max_image_pixels: int = 64_000_000
    """Refuse (as a per-image error with its reason) images with more pixels than this, before
    decoding them fully: AMG keeps full-resolution masks, so a 12000 x 9000 image would need
    ~100 MB per mask."""

    def __post_init__(self) -> None:
        check_min("limits.max_rss_gb", self.max_rss_gb, 0.0, strict=True)
        check_min("limits.oom_min_batch", self.oom_min_batch, 1)
        check_min("limits.max_image_pixels", self.max_image_pixels, 1)


TRACKERS = ("none", "mlflow")


@dataclass
class TrackingConfig:
    """Where results go besides the job directory (``conf/tracking/*.yaml``)."""

    name: str = "none"
    """``none``: result records (``result.json``, ``per_image.csv``, ``summary.csv``) only;
    ``mlflow``: also an MLflow parent run per sweep with one child run per job."""
    uri: str | None = None
    """``mlflow``: tracking URI (``http://host:5000``, ``sqlite:///path.db``, ...). ``null``:
    ``MLFLOW_TRACKING_URI``, else the SQLite store ``sqlite:///mlflow.db`` in the directory the
    command was launched from. Relative SQLite paths are taken from that directory."""
    experiment: str | None = None
    """``mlflow``: experiment name. ``null``: the sweep preset's name (``sweep_name``), else
    ``sam_bench``."""
    log_masks: bool = True
    """``mlflow``: upload each job's ``masks/`` folder (saved masks and overlay images)."""
    retry_timeout_s: float = 120.0
    """``mlflow``: how long one store operation is retried while the store is busy (SQLite
    "database is locked" when jobs log concurrently) before the job's logging gives up."""
    required: bool = True
    """Whether a tracking failure fails the command: the sweep ends listing what was not
    tracked and exits 1 (the records are complete either way). ``false``: a warning."""
    background: bool | None = True
    """``mlflow``, single runs: import MLflow and open its store in a helper process, while
    the job starts, imports torch and reads its data (``python -m sam_bench`` starts it before
    importing Hydra when its command line shows such a run; the job takes it over, or kills
    it when the configuration says otherwise); the job waits for it before the model is
    built (no measured stage shares the CPU with it), and the helper logs the run once the
    record is written. Where a core is free this takes MLflow off the command's path (~1 s
    of wall time on 2 cores); where none is, the command takes about as long as without it
    (the same CPU time, in two processes). A helper that exits before it is ready, or
    is not ready within 30 s, leaves the logging to the job's process. ``true`` (default):
    always; ``null``: only when the machine has a spare core (load average over the last
    minute below the core count minus one); ``false``: never (all in the job's process,
    after the job). Sweeps always log from their own processes."""

    def __post_init__(self) -> None:
        check_choice("tracking.name", self.name, TRACKERS)
        check_min("tracking.retry_timeout_s", self.retry_timeout_s, 0.0)


@dataclass
class ObjectiveConfig:
    """The single number a job returns to Hydra's sweepers (Optuna), also recorded as the
    ``objective`` metric. Always finite: a failed job or one over the latency budget gets
    ``penalty``."""

    metric: str | None = None
    """Catalogue metric to optimise; ``null``: the task's default objective (``miou`` for
    ``amg``). The objective is always maximised: a metric where lower is better is negated."""
    latency_budget_ms: float | None = None
    """Jobs whose ``latency_ms_p50`` exceeds this get ``penalty``. ``null``: no budget."""
    penalty: float | None = None
    """Objective of a failed job, a job over budget, or a NaN metric. ``null``: -1 when the
    metric is higher-is-better (accuracies are >= 0), -1e9 when it is negated."""

    def __post_init__(self) -> None:
        check_min("objective.latency_budget_ms", self.latency_budget_ms, 0.0, strict=True)
        if self.penalty is not None and not math.isfinite(self.penalty):
            raise ConfigError("objective.penalty", f"must be finite, got {self.penalty}")


@dataclass
class CacheConfig:
    """On-disk cache of image-encoder outputs (``engine=fast`` only; see
    :mod:`sam_bench.engines.encoder_cache`). Across commands: off unless ``cache.dir`` is set.
    Within a sweep: on by default (``cache.in_sweep``). It never changes results or
    ``latency_ms_*``, only the wall time a job takes."""

    dir: str | None = None
    """Cache folder (created if missing; relative paths are taken from the directory the
    command was launched from). ``null``: no cache. Parallel jobs may share one folder."""
    max_gb: float = 10.0
    """Size cap of the folder's entries in GB (10**9 bytes); least-recently-used entries are
    removed after a write until they fit."""
    in_sweep: bool = True
    """With ``cache.dir=null``, jobs of a sweep that run as separate groups (other grid sizes,
    crop layers, prompt modes...) but encode the same images with the same model,
    preprocessing, dtype and device share one encoder pass per image through a cache in the
    sweep folder (``.encoder_cache``), removed when the sweep ends (kept for ``resume=true``
    after an interrupt). Local launcher only. ``false``: every group encodes again."""

    def __post_init__(self) -> None:
        if self.dir is not None and not str(self.dir).strip():
            raise ConfigError("cache.dir", "must be a folder path or null, got an empty string")
        if math.isnan(self.max_gb):
            raise ConfigError("cache.max_gb", "must be a number, got nan")
        check_min("cache.max_gb", self.max_gb, 0.0, strict=True)


# --------------------------------------------------------------------------------------------
# top level


@dataclass
class Config:
    """The whole configuration of one job."""

    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    """On-disk cache of image-encoder outputs (``cache.dir=PATH``; off by default)."""
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    """Resource limits of a job (memory budget, largest image)."""
    engine: str = "fast"
    """AMG implementation (a registered engine): ``fast`` (same masks as the official
    generator, sharing encoder and decoder work between jobs that differ only in
    post-processing) or ``reference`` (the official ``SAM2AutomaticMaskGenerator``,
    unchanged)."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    dtype: str = "fp32"
    """``fp32`` or ``bf16`` (torch autocast around the engines' model calls). Kept so earlier
    sweeps keep their config ids; new sweeps should use ``model.runtime=bf16`` (the three
    components under autocast, agreement with eager recorded). ``dtype=bf16`` with a
    ``model.runtime`` other than ``eager`` is refused."""
    seed: int = 0
    """Seeds torch / numpy; also makes ``model.weights=random`` deterministic."""
    warmup: bool = True
    """One extra untimed pass on the first image before timing (the ``amg`` task on the CPU:
    a light one, the image encoder once on a small blank input; see the README's Timing)."""
    dry_run: bool = False
    """Print the job this configuration would run, then stop (no model is built)."""
    progress: bool = True
    """Show progress bars."""
    save_predictions: bool = False
    """Write every image's masks as COCO-results-style RLE JSON (``predictions.json``)."""
    sweep_name: str | None = None
    """Name of the sweep preset (set by ``conf/sweep/*.yaml``)."""
    predictions: str | None = None
    """Score existing predictions instead of running SAM 2: a file (AMG: a COCO results JSON
    with RLE masks and scores, as ``save_predictions=true`` writes it) or folder the task
    reads. No model is built; latency is not measured; the record says so."""
    resume: bool = False
    """Reuse finished work in the sweep folder: configurations whose record is there (and,
    within an unfinished configuration, the items its per-item log holds) are not computed
    again; matched by ``config_id`` and the dataset fingerprint, never by path. Without an
    explicit ``hydra.sweep.dir`` the most recent sweep folder with the same overrides is
    resumed. Without ``resume=true`` a sweep folder that holds records is refused."""
    plugins: list[str] = field(default_factory=list)
    """Python modules imported before the job is validated; they register their own tasks,
    engines, dataset formats and metrics (see :mod:`sam_bench.registry`)."""

    def __post_init__(self) -> None:
        registry.check("engine", self.engine)
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(self.device)):
            raise ConfigError(
                "device", f"must be auto, cpu, cuda or cuda:N (N a GPU index), got {self.device!r}"
            )
        check_choice("dtype", self.dtype, ("fp32", "bf16"))
        runtime = getattr(self.model, "runtime", "eager")
        if self.dtype == "bf16" and runtime not in ("eager", MISSING):
            raise ConfigError(
                "dtype",
                f"dtype=bf16 cannot be combined with model.runtime={runtime}; use "
                "model.runtime=bf16 alone (dtype=fp32)",
            )
        if self.predictions is not None and not str(self.predictions).strip():
            raise ConfigError("predictions", "must be a path or null, got an empty string")


@functools.cache
def root_schema() -> type[Config]:
    """The schema of the composed config: :class:`Config` (what every task shares) plus one
    field per settings section the registered tasks declare
    (:func:`sam_bench.registry.register_task`), named ``SweepConfig``."""
    own = {f.name for f in fields(Config)}
    extra = [
        (section, cls, field(default_factory=cls))
        for section, cls in registry.settings_sections().items()
        if section not in own
    ]
    if not extra:
        return Config
    schema = make_dataclass("SweepConfig", extra, bases=(Config,))
    schema.__module__ = __name__  # pickled by name (module __getattr__ below)
    return schema


def __getattr__(name: str) -> Any:
    if name == "SweepConfig":  # the root schema, found by pickle in a worker process
        return root_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: The resolver the launcher presets use to reserve GPUs from the job's device:
#: ``${sam_bench.gpus:${device},PER_JOB,AUTO,NONE}`` (:func:`sam_bench.environment.gpus_resolver`).
GPUS_RESOLVER = "sam_bench.gpus"


def _gpus(device: str, per_job: float = 1, auto: str = "this_machine", none: Any = 0) -> Any:
    from sam_bench.environment import gpus_resolver

    return gpus_resolver(device, per_job, auto, none)


def register_resolvers() -> None:
    """Register sam_bench's OmegaConf resolvers (idempotent)."""
    if not OmegaConf.has_resolver(GPUS_RESOLVER):
        OmegaConf.register_new_resolver(GPUS_RESOLVER, _gpus)


def register_configs() -> None:
    """Register the schemas so the YAML files under ``conf/`` extend them, and sam_bench's
    resolvers."""
    register_resolvers()
    registry.load_entry_points()
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=root_schema())
    for section, cls in registry.settings_sections().items():
        cs.store(group=section, name=f"base_{section}", node=cls)
    cs.store(group="model", name="base_model", node=ModelConfig)
    cs.store(group="dataset", name="base_dataset", node=DatasetConfig)
    cs.store(group="preprocess", name="base_preprocess", node=PreprocessConfig)
    cs.store(group="task", name="base_task", node=TaskConfig)
    cs.store(group="tracking", name="base_tracking", node=TrackingConfig)


def check_known_keys(node: Any, schema: type, prefix: str = "") -> None:
    """Refuse keys the schema does not declare (``+amg.pointz_per_side=3`` gets past Hydra's
    own check: ``+`` adds a key to the structured config), with the closest declared key."""
    import difflib
    import typing

    known = {f.name: f for f in fields(schema)}
    hints = typing.get_type_hints(schema)
    for key in node.keys() if isinstance(node, DictConfig) else ():
        key = str(key)
        name = f"{prefix}{key}"
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
            hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
            raise ConfigError(name, f"unknown key{hint}; {prefix.rstrip('.') or 'the config'} "
                              f"takes: {', '.join(known)}")  # fmt: skip
        kind = hints.get(key)
        if isinstance(kind, type) and is_dataclass(kind):
            check_known_keys(node._get_node(key), kind, f"{name}.")


def to_typed(cfg: DictConfig) -> Config:
    """Turn a composed config into :class:`Config` objects, running every range check.

    Raises :class:`ConfigError` naming the first offending key.
    """
    if "hydra" in cfg:  # a full sweep config: drop the hydra node, keep the schema
        cfg = copy.deepcopy(cfg)
        with read_write(cfg), open_dict(cfg):
            del cfg["hydra"]
    check_known_keys(cfg, root_schema())
    obj = OmegaConf.to_object(cfg)
    if not isinstance(obj, Config):  # composed without the schema (should not happen)
        raise ConfigError("<root>", "config was not composed from the sam_bench schema")
    return obj


#: The packaged config folder (``conf/`` at the repository root is a link to it).
CONF_DIR = Path(__file__).resolve().parent / "conf"
