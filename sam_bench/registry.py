"""The one place that lists task names, engine names and dataset formats.

Each kind maps a name to ``"module:attribute"``, imported only when used (so listing names
never imports torch or sam2). Config validation, error messages ("did you mean"), the task
runner, the engine factory and the dataset builder all read these tables. A plugin module (the
``plugins`` setting: modules imported before a job is validated) adds its own entries with
:func:`register`, e.g. a new task::

    from sam_bench.registry import register
    register("task", "toy", "my_package.toy_task:ToyTask")
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable
from typing import Any

from sam_bench.errors import ConfigError

_TABLES: dict[str, dict[str, str]] = {
    "task": {
        "amg": "sam_bench.tasks.amg:AMGTask",
        "video": "sam_bench.tasks.video:VideoTask",
        "semantic": "sam_bench.tasks.semantic:SemanticTask",
        "prompted": "sam_bench.tasks.prompted.task:PromptedTask",
    },
    "engine": {
        "fast": "sam_bench.engines:fast_engine",
        "reference": "sam_bench.engines:reference_engine",
    },
    "runtime": {
        "eager": "sam_bench.models.runtimes.torch_runtimes:EagerRuntime",
        "compile": "sam_bench.models.runtimes.torch_runtimes:CompileRuntime",
        "bf16": "sam_bench.models.runtimes.torch_runtimes:Bf16Runtime",
        "onnxruntime": "sam_bench.models.runtimes.onnx:OnnxRuntime",
        "transformers": "sam_bench.models.runtimes.transformers:TransformersRuntime",
    },
    "dataset": {
        "synthetic": "sam_bench.data.registry:build_synthetic",
        "coco": "sam_bench.data.coco:from_config",
        "instance_folder": "sam_bench.data.instance_folder:from_config",
        "dsb": "sam_bench.data.dsb:from_config",
        "davis": "sam_bench.data.davis:from_config",
        "semantic_folder": "sam_bench.data.semantic_folder:from_config",
    },
}

#: Modules that declare metrics into the catalogue (``sam_bench.metrics.catalogue``), imported
#: before the catalogue answers any lookup: the runner's, and each registered task's.
_METRIC_MODULES: list[str] = [
    "sam_bench.metrics.cost",
    "sam_bench.metrics.runtime",
    "sam_bench.metrics.instance",
    "sam_bench.tasks.prompted.metrics",
    "sam_bench.tasks.video.metrics",
    "sam_bench.tasks.semantic.metrics",
]

#: Settings sections of the registered tasks: config key -> ``"module:DataclassName"``. The
#: root config schema (:func:`sam_bench.config.root_schema`) has one field per section.
_SETTINGS: dict[str, str] = {
    "amg": "sam_bench.tasks.amg.settings:AMGConfig",
    "prompt": "sam_bench.tasks.prompted.settings:PromptConfig",
    "video": "sam_bench.tasks.video.settings:VideoConfig",
    "semantic": "sam_bench.tasks.semantic.settings:SemanticConfig",
}

#: Entry-point group through which installed packages register tasks: each entry point names
#: a module that calls :func:`register_task` when imported.
ENTRY_POINT_GROUP = "sam_bench.tasks"
_entry_points_loaded = False

#: The config key that names each kind (for error messages).
CONFIG_KEYS = {
    "task": "task.name",
    "engine": "engine",
    "dataset": "dataset.format",
    "runtime": "model.runtime",
}


def names(kind: str) -> tuple[str, ...]:
    """Registered names of ``kind`` (``task``, ``engine``, ``runtime`` or ``dataset``), in
    order."""
    if kind == "task":
        load_entry_points()
    return tuple(_TABLES[kind])


def register(kind: str, name: str, target: str) -> None:
    """Add (or replace) ``name`` of ``kind``; ``target`` is ``"module:attribute"``."""
    if kind not in _TABLES:
        raise ValueError(f"unknown registry kind {kind!r}; one of {', '.join(_TABLES)}")
    if ":" not in target:
        raise ValueError(f"target {target!r} must be 'module:attribute'")
    _TABLES[kind][name] = target


def register_task(
    name: str,
    target: str,
    *,
    settings: dict[str, str] | None = None,
    metrics: Iterable[str] = (),
) -> None:
    """Register task ``name`` (``target``: ``"module:TaskClass"``), the settings sections it
    adds to the config (``{"toy": "my_package.settings:ToySettings"}``: ``toy.*`` keys,
    typed by that dataclass) and the modules that declare its metrics. Settings sections must
    be registered before Hydra composes the config: from an entry point (group
    :data:`ENTRY_POINT_GROUP`), not from ``plugins=``."""
    register("task", name, target)
    for section, cls in (settings or {}).items():
        if ":" not in cls:
            raise ValueError(f"settings {cls!r} must be 'module:attribute'")
        _SETTINGS[section] = cls
    for module in metrics:
        if module not in _METRIC_MODULES:
            _METRIC_MODULES.append(module)


def settings_sections() -> dict[str, type]:
    """The registered settings sections and their dataclasses (imported here)."""
    out = {}
    for section, target in _SETTINGS.items():
        module, _, attr = target.partition(":")
        out[section] = getattr(importlib.import_module(module), attr)
    return out


def metric_modules() -> list[str]:
    """The modules that declare metrics (runner's and registered tasks'), entry points
    loaded."""
    load_entry_points()
    return list(_METRIC_MODULES)


def load_entry_points() -> None:
    """Import the modules of the :data:`ENTRY_POINT_GROUP` entry points (once); each registers
    its tasks."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            importlib.import_module(ep.value.partition(":")[0])
        except Exception as e:
            raise ConfigError(
                "plugins", f"cannot import task entry point {ep.name!r} ({ep.value}): {e}"
            ) from None


def unknown(kind: str, name: Any) -> ConfigError:
    """The error for an unknown name, with a suggestion and the available names."""
    choices = names(kind)
    close = difflib.get_close_matches(str(name), choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(
        CONFIG_KEYS[kind], f"unknown {kind} {name!r}{hint}; available: {', '.join(choices)}"
    )


def check(kind: str, name: Any) -> None:
    """Raise :func:`unknown` unless ``name`` is registered."""
    if name not in names(kind):
        raise unknown(kind, name)


def target(kind: str, name: str) -> str:
    """``"module:attribute"`` registered as ``name`` of ``kind`` (not imported)."""
    check(kind, name)
    return _TABLES[kind][name]


def load(kind: str, name: str) -> Any:
    """The object registered as ``name`` (imported on first use)."""
    check(kind, name)
    module, _, attr = _TABLES[kind][name].partition(":")
    return getattr(importlib.import_module(module), attr)


def import_plugins(modules: Iterable[str] | None) -> None:
    """Import the ``plugins`` modules (they register their own tasks, metrics, ...).

    Raises :class:`ConfigError` naming the module that cannot be imported.
    """
    for module in modules or ():
        try:
            importlib.import_module(str(module))
        except Exception as e:
            why = f"cannot import {module!r}: {type(e).__name__}: {e}"
            raise ConfigError("plugins", why) from None
