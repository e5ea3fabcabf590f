"""Training configs: YAML files read into typed dataclasses, strictly.

A config may name ``_base_`` files (paths relative to it) that it overrides key by
key; ``--set a.b=VALUE`` overrides (VALUE read as YAML) apply last. An unknown
key, a value of the wrong type or a missing required key is a :class:`ConfigError`
naming the dotted key and the file. Packaged configs (``attn2scale/configs``)
can be named without their folder or suffix: ``person_part/attention_3s_esupv``.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from .solver import SolverConfig

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
SOLVER_REQUIRED = ("base_lr", "lr_policy", "max_iter", "momentum", "weight_decay", "iter_size")


class ConfigError(ValueError):
    """A config that cannot be used, with the key and file named."""


def _at_least(obj, minimum, *names) -> None:
    for n in names:
        v = getattr(obj, n)
        if v is not None and v < minimum:
            raise ValueError(f"{n} must be >= {minimum}, got {v}")


@dataclass
class ModelConfig:
    name: str
    width_div: int = 1
    options: Dict[str, Any] = field(default_factory=dict)  # keyword arguments of build_model

    def __post_init__(self):
        _at_least(self, 1, "width_div")


@dataclass
class InitConfig:
    weights: Optional[str] = None  # converted Caffe weights (.safetensors), or None: fillers
    source: str = ""  # where the weights come from (weights/manifest.json id)
    expect_missing: List[str] = field(default_factory=list)  # parameter prefixes the file does not hold
    filler: Optional[str] = None  # without weights: "msra" = Caffe's MSRAFiller on every convolution

    def __post_init__(self):
        if self.filler not in (None, "msra"):
            raise ValueError(f"filler must be null or 'msra', got {self.filler!r}")


@dataclass
class DataConfig:
    dataset: str
    root: str
    train_split: str
    val_split: str
    batch_size: int
    crop_size: Optional[int] = None  # None: the dataset's training crop (321)
    test_crop: Optional[int] = None  # None: the dataset's test crop (513; COCO 641), images pad to it
    mirror: bool = True
    scale_range: Optional[List[float]] = None  # "Attention+": [0.6, 1.4]
    workers: int = 2

    def __post_init__(self):
        from ..data.registry import DATASETS

        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        _at_least(self, 1, "batch_size", "crop_size", "test_crop")
        _at_least(self, 0, "workers")
        if self.scale_range is not None and (len(self.scale_range) != 2 or not 0 < self.scale_range[0]
                                             <= self.scale_range[1]):
            raise ValueError(f"scale_range must be [low, high] with 0 < low <= high, got {self.scale_range}")


@dataclass
class TrainConfig:
    seed: int = 0
    checkpoint_every: int = 1000
    val_every: int = 0  # 0: no periodic validation
    amp: Optional[str] = None  # None, "bf16" or "fp16"
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False
    device: str = "auto"  # "auto", "cpu", "cuda"

    def __post_init__(self):
        _at_least(self, 0, "seed", "val_every")
        _at_least(self, 1, "checkpoint_every")
        if self.amp not in (None, "bf16", "fp16"):
            raise ValueError(f"amp must be null, 'bf16' or 'fp16', got {self.amp!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda' (torchrun picks the GPU), got {self.device!r}")


@dataclass
class CellConfig:
    """The table cell a config reproduces (``attn2scale/configs`` and tools/reproduce_table.py)."""

    table: str
    row: str
    column: str = ""


@dataclass
class AuthorsConfig:
    """The authors' own Caffe config the settings were read from (``${EXP}``, ``${NET_ID}``)."""

    exp: str
    net_id: str
    solver: str = "solver.prototxt"


@dataclass
class Config:
    name: str
    model: ModelConfig
    data: DataConfig
    solver: SolverConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    init: InitConfig = field(default_factory=InitConfig)
    cell: Optional[CellConfig] = None
    authors: Optional[AuthorsConfig] = None
    description: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def resolve_config_path(name: Union[str, Path]) -> Path:
    """A path, or the name of a packaged config."""
    p = Path(name)
    if p.is_file():
        return p
    for cand in (CONFIG_DIR / name, CONFIG_DIR / f"{name}.yaml"):
        if cand.is_file():
            return cand
    raise ConfigError(f"config {str(name)!r} not found (neither a file nor a packaged config under {CONFIG_DIR})")


def _read_yaml(path: Path, chain: Sequence[Path] = ()) -> dict:
    import yaml

    if path in chain:
        raise ConfigError(f"{path}: _base_ loop through {[str(c) for c in chain]}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config is a mapping of keys, got {type(data).__name__}")
    bases = data.pop("_base_", [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a file name or a list of them, got {bases!r}")
    merged: dict = {}
    for base in bases:
        merged = _merge(merged, _read_yaml((path.parent / base).resolve(), [*chain, path]))
    return _merge(merged, data)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def apply_override(data: dict, item: str) -> None:
    """``a.b.c=VALUE`` (VALUE parsed as YAML) into the nested dict."""
    import yaml

    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects KEY=VALUE (e.g. solver.base_lr=0.01), got {item!r}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: the value is not valid YAML: {exc}") from None
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {item!r}: {p!r} is not a section")
    node[parts[-1]] = value


def load_config(name: Union[str, Path], overrides: Sequence[str] = ()) -> Config:
    path = resolve_config_path(name)
    data = _read_yaml(path.resolve())
    for item in overrides:
        apply_override(data, item)
    solver = data.get("solver")
    missing = [k for k in SOLVER_REQUIRED if isinstance(solver, dict) and k not in solver]
    if missing:  # no silent defaults for what decides the result
        raise ConfigError(f"{path}: missing key 'solver.{missing[0]}' (a solver states {', '.join(SOLVER_REQUIRED)})")
    return build(Config, data, "", str(path))


def build(cls, data: Any, key: str, where: str):
    """``cls`` (a dataclass) from ``data``, every key and type checked."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {key or 'the config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key {_join(key, unknown[0])!r} (valid keys of "
                          f"{key or 'the config'}: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        k = _join(key, name)
        if name in data:
            kwargs[name] = _typed(hints[name], data[name], k, where)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing key {k!r}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {key or 'config'}: {exc}") from None


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _typed(tp, value, key: str, where: str):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Union:  # Optional[X]
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _typed(inner[0], value, key, where)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key, where)
    if origin in (list, List):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key} must be a list, got {value!r}")
        return [_typed(args[0], v, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key} must be a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is not None and math.isfinite(number):
            return number
    if tp in (int, float, str, bool) and (not isinstance(value, tp) or (tp is int and isinstance(value, bool))):
        raise ConfigError(f"{where}: {key} must be {tp.__name__}, got {value!r} ({type(value).__name__})")
    return value


def list_configs() -> List[str]:
    """Names of the packaged configs (without the suffix), excluding bases."""
    return sorted(str(p.relative_to(CONFIG_DIR).with_suffix("")) for p in CONFIG_DIR.rglob("*.yaml")
                  if not p.relative_to(CONFIG_DIR).parts[0].startswith("_"))
