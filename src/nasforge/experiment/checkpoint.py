"""How a run stores objects' state: exact JSON where it can, tensors as deduplicated blobs.

A strategy's checkpoint is rewritten after every ask and tell, so the encoding must be cheap when
nothing large changed, exact (a resumed run continues bit for bit) and safe to read: plain JSON
when the state is plain, else JSON with the parts JSON cannot hold (tensors, arrays) as a
`torch.save` payload read back with ``torch.load(weights_only=True)``, so a run folder never
unpickles code. Large tensors go out as blobs keyed by their content's digest, which the store
writes once per content (see `nasforge.experiment.store`).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Mapping
from typing import Any


# -- JSON helpers -------------------------------------------------------------------------------------
def json_safe(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become None (strict JSON has no NaN/inf)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return json_safe(value.item())
        except (TypeError, ValueError):
            pass
    return value


def dumps(value: Any) -> str:
    return json.dumps(json_safe(value), sort_keys=True, allow_nan=False)


def loads_or_none(text: str | None) -> Any:
    return None if text is None else json.loads(text)


# -- checkpoint blobs (torch.save / torch.load(weights_only=True)) ------------------------------------
_NDARRAY_TAG = "__nasforge_ndarray__"
_BLOB_TAG = "__nasforge_blob__"
#: Tensors at least this large are stored once per content in the ``blobs`` table.
BLOB_MIN_BYTES = 1 << 14


def _digest(tensor: Any) -> str:
    """Content hash of a dense tensor (dtype and shape included)."""
    import torch

    data = tensor.detach().cpu().contiguous()
    h = hashlib.sha256(f"{data.dtype}{tuple(data.shape)}".encode())  # hardware-accelerated
    h.update(data.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:32]


def _to_safe(value: Any, path: str, blobs: dict[str, Any] | None = None) -> Any:
    """`value` as something `torch.load(weights_only=True)` gives back; large tensors go to
    `blobs` (hash -> tensor) with a reference in their place when `blobs` is given."""
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        if (
            blobs is not None
            and value.layout == torch.strided
            and value.numel() * value.element_size() >= BLOB_MIN_BYTES
        ):
            key = _digest(value)
            blobs[key] = value
            return {_BLOB_TAG: key}
        return value
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{path}: cannot checkpoint a numpy array of dtype {value.dtype}")
        return {_NDARRAY_TAG: torch.from_numpy(value.copy()), "dtype": str(value.dtype)}
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int, float, bool, type(None))):
                raise TypeError(f"{path}: cannot checkpoint a key of type {type(k).__name__}")
            out[k] = _to_safe(v, f"{path}[{k!r}]", blobs)
        return out
    if isinstance(value, list):
        return [_to_safe(v, f"{path}[{i}]", blobs) for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return tuple(_to_safe(v, f"{path}[{i}]", blobs) for i, v in enumerate(value))
    if isinstance(value, (set, frozenset)):
        return type(value)(_to_safe(v, f"{path}{{}}") for v in value)
    raise TypeError(
        f"{path}: cannot checkpoint an object of type {type(value).__name__} "
        "(state_dict() must hold plain values, tensors or numpy arrays)"
    )


class MissingBlob(LookupError):
    """A checkpoint refers to a tensor the blobs table does not hold."""


class UsedBlobs(dict):
    """Blobs that remember which hashes were looked up, so unreferenced rows can be found."""

    def __init__(self, blobs: Mapping[str, Any]):
        super().__init__(blobs)
        self.used: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.used.add(key)
        return super().__getitem__(key)


def _from_safe(value: Any, blobs: Mapping[str, Any]) -> Any:
    if isinstance(value, dict):
        if _NDARRAY_TAG in value and set(value) == {_NDARRAY_TAG, "dtype"}:
            return value[_NDARRAY_TAG].numpy().astype(value["dtype"], copy=True)
        if set(value) == {_BLOB_TAG}:
            if value[_BLOB_TAG] not in blobs:
                raise MissingBlob(value[_BLOB_TAG])
            return blobs[value[_BLOB_TAG]]
        return {k: _from_safe(v, blobs) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_safe(v, blobs) for v in value]
    if isinstance(value, tuple):
        return tuple(_from_safe(v, blobs) for v in value)
    return value


#: Checkpoint formats. A strategy state is mostly plain values (random search, evolution, the
#: pending-ask ledger with hundreds of asks outstanding) plus, for the RL controller, a few tensors.
#: Plain values go to JSON, ~10x faster than pickling them one by one with `torch.save`; whatever
#: JSON would not give back exactly (tensors, numpy arrays, tuples, int keys, NaN) goes to one
#: `torch.save` beside it, loaded with `weights_only=True`.
_JSON_MAGIC = b"nasforge-json\n"
_MIXED_MAGIC = b"nasforge-mixed\n"
_OPAQUE_TAG = "__nasforge_opaque__"


def _exact_json(value: Any) -> bool:
    """Whether JSON gives `value` back unchanged (no tuples, int keys, NaN, tensors...); the three
    passes run in C, so whole subtrees of plain values are checked at once."""
    try:
        return json.loads(json.dumps(value, allow_nan=False)) == value
    except (TypeError, ValueError):
        return False


def _split_plain(value: Any, opaque: list, path: str, blobs: dict[str, Any] | None) -> Any:
    """`value` with every part JSON would not round-trip replaced by ``{_OPAQUE_TAG: index}``."""
    if type(value) is dict and _OPAQUE_TAG not in value and all(isinstance(k, str) for k in value):
        # a dict is split key by key, so one tensor in it does not send its plain siblings twice
        # through the JSON check
        return {k: _split_plain(v, opaque, f"{path}[{k!r}]", blobs) for k, v in value.items()}
    if not isinstance(value, dict) and _exact_json(value):
        return value
    if type(value) is list:
        return [_split_plain(v, opaque, f"{path}[{i}]", blobs) for i, v in enumerate(value)]
    opaque.append(_to_safe(value, path, blobs))
    return {_OPAQUE_TAG: len(opaque) - 1}


def _join_plain(value: Any, opaque: list, blobs: Mapping[str, Any]) -> Any:
    if isinstance(value, list):
        return [_join_plain(v, opaque, blobs) for v in value]
    if isinstance(value, dict):
        if set(value) == {_OPAQUE_TAG}:
            return _from_safe(opaque[value[_OPAQUE_TAG]], blobs)
        return {k: _join_plain(v, opaque, blobs) for k, v in value.items()}
    return value


def state_to_bytes(state: Any, blobs: dict[str, Any] | None = None) -> bytes:
    """Serialise a state dict: JSON, with a `torch.save` of the parts JSON cannot hold exactly.

    With `blobs`, large tensors are left out and collected there by content hash; the bytes then
    refer to them and `state_from_bytes` needs them back."""
    import torch

    opaque: list = []
    plain = json.dumps(_split_plain(state, opaque, "state", blobs), separators=(",", ":")).encode()
    if not opaque:
        return _JSON_MAGIC + plain
    buffer = io.BytesIO()
    torch.save(opaque, buffer)
    return _MIXED_MAGIC + len(plain).to_bytes(8, "big") + plain + buffer.getvalue()


def state_from_bytes(blob: bytes, blobs: Mapping[str, Any] | None = None) -> Any:
    """Inverse of `state_to_bytes`; never unpickles more than ``torch.load(weights_only=True)`` does.
    `blobs` maps the hashes of tensors stored apart to those tensors."""
    import torch

    blobs = {} if blobs is None else blobs
    if blob.startswith(_JSON_MAGIC):
        return json.loads(blob[len(_JSON_MAGIC) :])
    if blob.startswith(_MIXED_MAGIC):
        start = len(_MIXED_MAGIC) + 8
        end = start + int.from_bytes(blob[len(_MIXED_MAGIC) : start], "big")
        opaque = torch.load(io.BytesIO(blob[end:]), weights_only=True, map_location="cpu")
        return _join_plain(json.loads(blob[start:end]), opaque, blobs)
    # checkpoints written before the mixed format: one torch.save of the whole state
    return _from_safe(torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu"), blobs)
