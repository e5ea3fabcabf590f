"""Checkpoints and initial weights; nothing is ever unpickled.

A checkpoint ``OUT/checkpoints/iter_NNNNNN`` is three files: ``.safetensors``
(the model's weights), ``.solver.safetensors`` (momentum buffers by parameter
name, and the RNG states) and ``.json`` (iteration, config, stream position,
sha256 of the other two). Each is written to a temporary file, flushed and
renamed; the JSON goes last and ``OUT/checkpoints/latest`` is switched to it
after that, so a run killed at any moment leaves the previous checkpoint whole
and ``latest`` pointing to a complete one.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..fileio import atomic_path, write_text_atomic

FORMAT = 1
# Keys whose change does not change the computation: a resume may differ in them.
RESUMABLE_CHANGES = ("data.root", "data.workers", "data.test_crop", "train.checkpoint_every", "train.val_every",
                     "train.device", "solver.max_iter", "description")


class CheckpointError(ValueError):
    """A checkpoint or weight file that cannot be used, named."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _save_tensors(tensors: Dict[str, torch.Tensor], path: Path, meta: Dict[str, str]) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}, tmp, metadata=meta)


def _load_tensors(path: Path) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not found") from None
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path}: not a readable safetensors file: {exc}") from None


def rng_state() -> Dict[str, torch.Tensor]:
    states = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            states[f"rng.cuda{i}"] = s
    return states


def set_rng_state(tensors: Dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda"))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda][: torch.cuda.device_count()])


def save_checkpoint(out: Path, iteration: int, model: torch.nn.Module, momentum: Dict[str, torch.Tensor],
                    config: dict, extra: Optional[dict] = None) -> Path:
    """Write checkpoint ``iteration`` (iterations completed) under ``out/checkpoints``."""
    folder = Path(out) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"iter_{iteration:06d}"
    weights, solver, meta = (stem.with_suffix(".safetensors"), stem.with_suffix(".solver.safetensors"),
                             stem.with_suffix(".json"))
    _save_tensors(model.state_dict(), weights, {"format": "pt", "attn2scale": "weights"})
    _save_tensors({**{f"momentum.{k}": v for k, v in momentum.items()}, **rng_state()}, solver,
                  {"format": "pt", "attn2scale": "solver"})
    record = {"format": FORMAT, "iteration": iteration, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "weights": weights.name, "weights_sha256": file_sha256(weights), "solver": solver.name,
              "solver_sha256": file_sha256(solver), "config": config, **(extra or {})}
    write_text_atomic(meta, json.dumps(record, indent=1) + "\n")
    write_text_atomic(folder / "latest", meta.name + "\n")
    return meta


def latest_checkpoint(out: Path) -> Optional[Path]:
    pointer = Path(out) / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    return pointer.parent / pointer.read_text().strip()


def load_checkpoint(meta_path: Path) -> Tuple[dict, Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """(record, weights, solver tensors) of a checkpoint's JSON, the files' sha256 checked."""
    try:
        record = json.loads(Path(meta_path).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{meta_path}: checkpoint record not found") from None
    except ValueError as exc:
        raise CheckpointError(f"{meta_path}: not a checkpoint record: {exc}") from None
    if record.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: checkpoint format {record.get('format')!r}, this version reads {FORMAT}")
    out = []
    for key in ("weights", "solver"):
        path = Path(meta_path).parent / record[key]
        if not path.is_file() or file_sha256(path) != record[f"{key}_sha256"]:
            raise CheckpointError(f"{path}: missing or not the file {meta_path.name} recorded (sha256 differs)")
        out.append(_load_tensors(path))
    return record, out[0], out[1]


def config_differences(saved: dict, current: dict, prefix: str = "") -> List[str]:
    """Dotted keys whose values differ, except those a resume may change (``max_iter`` only
    where it does not shape the learning rate: not under the poly policy)."""
    if not prefix and (saved.get("solver") or {}).get("lr_policy") == "poly":
        s, c = saved["solver"].get("max_iter"), (current.get("solver") or {}).get("max_iter")
        if s != c:
            return [f"solver.max_iter: {s!r} in the checkpoint, {c!r} now (it sets the poly learning rate)"]
    diffs = []
    for k in sorted(set(saved) | set(current)):
        key = f"{prefix}{k}"
        a, b = saved.get(k), current.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += config_differences(a, b, key + ".")
        elif a != b and key not in RESUMABLE_CHANGES:
            diffs.append(f"{key}: {a!r} in the checkpoint, {b!r} now")
    return diffs


def load_init_weights(model: torch.nn.Module, path: Path, expect_missing: Sequence[str], *,
                      source_hint: str = "") -> List[str]:
    """Copy converted weights into ``model`` by name (a file's ``conv1_1.weight`` also fills a
    share-net's ``backbone.conv1_1.weight``), as Caffe's CopyTrainedLayersFrom copies by layer
    name. A shape mismatch is an error; model parameters the file lacks must lie under
    ``expect_missing`` (the new head), and at least one must be filled. Returns notes."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"init.weights {path} not found. {source_hint}".strip())
    tensors = _load_tensors(path)
    state = model.state_dict()
    filled, unused = set(), []
    for k, v in tensors.items():
        target = next((t for t in (k, f"backbone.{k}") if t in state), None)
        if target is None:
            unused.append(k)
            continue
        if tuple(v.shape) != tuple(state[target].shape):
            raise CheckpointError(f"{path}: {k} has shape {tuple(v.shape)}, the model's {target} "
                                  f"{tuple(state[target].shape)}; is this the init model of this config?")
        with torch.no_grad():
            state[target].copy_(v)
        filled.add(target)
    if not filled:
        raise CheckpointError(f"{path}: none of its {len(tensors)} tensors names a parameter of the model "
                              f"(e.g. {sorted(tensors)[:3]} vs {sorted(state)[:3]})")
    missing = [k for k in state if k not in filled and not any(k == p or k.startswith(p + ".")
                                                                  for p in expect_missing)]
    if missing:
        raise CheckpointError(f"{path}: lacks {len(missing)} of the model's tensors outside init.expect_missing "
                              f"{list(expect_missing)}: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    notes = [f"init: {len(filled)} tensors from {path}"]
    if unused:
        notes.append(f"init: {len(unused)} tensors of the file have no place in the model: {unused[:5]}")
    return notes


def manifest_hint(source: str, repo_root: Path) -> str:
    """How to obtain the weights of a ``weights/manifest.json`` entry."""
    manifest = repo_root / "weights" / "manifest.json"
    if not source or not manifest.is_file():
        return f"It is the converted '{source}' (see weights/README.md)." if source else ""
    for entry in json.loads(manifest.read_text()).get("models", []):
        if entry.get("id") == source:
            return (f"It is {entry.get('what', source)}. Download {entry.get('published_at')} into weights/ and "
                    f"convert it: {entry.get('convert')}")
    return f"It is the converted '{source}', which weights/manifest.json does not list."
