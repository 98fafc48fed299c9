"""Restricted unpickling of foreign network pickles (NVIDIA snapshots, TensorFlow StyleGAN2).

A network pickle is a program: ``pickle.load`` imports whatever module a ``GLOBAL`` opcode names
and calls whatever a ``REDUCE`` opcode is handed. NVIDIA snapshot pickles additionally embed the
network source code, which their own loader ``exec``s. This module never does either:

* :class:`SafeUnpickler.find_class` resolves only an explicit allow-list of ``(module, name)``
  pairs, each mapped to an inert stand-in defined here (never to the real object), and raises
  :class:`~spatial_latent.errors.UnsafePickleError` naming any other global.
* Every allowed callable validates its arguments and returns either plain data or an inert record
  (:class:`PersistentObject`, :class:`TensorRecord`, ...). Records refuse the ``BUILD`` opcode, so a
  pickle cannot set attributes on them; the stand-in classes use a metaclass that refuses
  attribute assignment, so one pickle cannot tamper with the stand-ins used by the next.
* Persistent ids are refused. Tensor storages (``torch.storage._load_from_bytes`` blobs in the
  legacy ``torch.save`` format) are parsed by :func:`read_legacy_storage`, a small restricted
  reader that checks every declared size against the bytes actually present before allocating.
* Before unpickling, :func:`load_pickle_bytes` / :func:`load_pickle_file` walk the opcode stream
  once (:mod:`pickletools`) so that a truncated file, an absurd declared length or memo index is
  reported as a clean :class:`~spatial_latent.errors.CheckpointError` instead of a huge
  allocation. Files are streamed, not read whole, and capped in size.

``torch_utils.persistence._reconstruct_persistent_obj`` is mapped to a function that keeps the
class name and the instance ``state`` and drops ``module_src`` unread.
"""

from __future__ import annotations

import io
import logging
import math
import os
import pickle
import pickletools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, UnsafePickleError, UnsupportedCheckpointError
from ..limits import MAX_CHECKPOINT_BYTES, check_file_size

logger = logging.getLogger(__name__)

__all__ = [
    "ArrayRecord",
    "DTypeRecord",
    "PersistentObject",
    "SafeUnpickler",
    "StorageRecord",
    "TFNetworkStub",
    "TensorRecord",
    "allowed_globals",
    "load_pickle_bytes",
    "load_pickle_file",
    "read_legacy_storage",
]

# Limits on what a single tensor description may claim; real networks are far below these.
_MAX_NDIM = 16


# --------------------------------------------------------------------------------------------
# Inert records and stand-in classes
# --------------------------------------------------------------------------------------------


class _FrozenMeta(type):
    """Metaclass of the stand-in classes given to the unpickler.

    A pickle's ``BUILD`` opcode with a "slot state" calls ``setattr`` on whatever object is on
    the stack, including a class returned by ``find_class``; freezing the classes keeps one
    malicious file from altering the stand-ins used by later loads in the same process.
    """

    def __setattr__(cls, name: str, value: Any) -> None:
        raise UnsafePickleError(f"pickle tried to set attribute {name!r} on stand-in class {cls.__name__}")

    def __delattr__(cls, name: str) -> None:
        raise UnsafePickleError(f"pickle tried to delete attribute {name!r} of stand-in class {cls.__name__}")


class _Inert(metaclass=_FrozenMeta):
    """Base of the records produced while unpickling: they refuse the ``BUILD`` opcode."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise UnsafePickleError(f"pickle tried to set state on a {type(self).__name__}")


class PersistentObject(_Inert):
    """What ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` becomes.

    Attributes: ``class_name`` (str, e.g. ``'Generator'``), ``state`` (the module's instance
    dict: ``_parameters``, ``_buffers``, ``_modules``, ``_init_kwargs``, plain attributes),
    ``version`` (persistence format version) and ``module_src_chars`` (length of the embedded
    source, which is discarded unread apart from its length).
    """

    __slots__ = ("class_name", "state", "version", "module_src_chars")

    def __init__(self, class_name: str, state: dict, version: Any, module_src_chars: int) -> None:
        self.class_name = class_name
        self.state = state
        self.version = version
        self.module_src_chars = module_src_chars

    def __repr__(self) -> str:
        return f"PersistentObject({self.class_name!r})"


class StorageRecord(_Inert):
    """A tensor storage: ``flat`` is a 1-D CPU tensor of ``dtype`` holding all its elements."""

    __slots__ = ("flat",)

    def __init__(self, flat: torch.Tensor) -> None:
        self.flat = flat

    def __repr__(self) -> str:
        return f"StorageRecord({self.flat.dtype}, numel={self.flat.numel()})"


class TensorRecord(_Inert):
    """A tensor rebuilt from a storage (``tensor``), and whether it was an ``nn.Parameter``."""

    __slots__ = ("tensor", "is_parameter")

    def __init__(self, tensor: torch.Tensor, is_parameter: bool = False) -> None:
        self.tensor = tensor
        self.is_parameter = is_parameter

    def __repr__(self) -> str:
        return f"TensorRecord(shape={list(self.tensor.shape)}, dtype={self.tensor.dtype})"


# numpy dtype strings (as numpy pickles them: kind + item size) that may appear; object,
# structured, datetime and string dtypes are refused.
_NUMPY_DTYPE_SPECS = frozenset(
    ["f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1", "c8", "c16"]
)


class DTypeRecord(_Inert):
    """A numeric numpy dtype described by a validated spec string and byte order.

    numpy's own ``dtype.__setstate__`` is never called: its state tuple can carry flags that
    make numpy treat raw bytes as object pointers, so the state is validated and only its byte
    order is kept.
    """

    __slots__ = ("spec", "byteorder")

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.byteorder = "="

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (8, 9):
            raise UnsafePickleError("numpy dtype state has an unexpected layout")
        version, endian, subarray, names, fields = state[:5]
        if version not in (3, 4) or endian not in ("<", ">", "|", "="):
            raise UnsafePickleError(f"numpy dtype state has version {version!r}, byte order {endian!r}")
        if subarray is not None or names is not None or fields is not None:
            raise UnsafePickleError("structured / sub-array numpy dtypes are not allowed")
        if not all(isinstance(x, int) for x in state[5:8]):
            raise UnsafePickleError("numpy dtype state has non-integer size fields")
        self.byteorder = endian

    @property
    def numpy(self) -> np.dtype:
        dt = np.dtype(self.spec)
        return dt.newbyteorder(self.byteorder) if self.byteorder in "<>" else dt

    def __repr__(self) -> str:
        return f"DTypeRecord({self.byteorder}{self.spec})"


class ArrayRecord(_Inert):
    """A numpy array being unpickled: created empty by ``_reconstruct``, filled by one ``BUILD``.

    ``array`` is a read-only numeric ndarray once built, ``None`` before.
    """

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if self.array is not None:
            raise UnsafePickleError("numpy array state set twice")
        if not isinstance(state, tuple):
            raise UnsafePickleError("numpy array state is not a tuple")
        if len(state) == 5:
            state = state[1:]  # drop the version number
        if len(state) != 4:
            raise UnsafePickleError("numpy array state has an unexpected layout")
        shape, dtype, is_fortran, raw = state
        if not isinstance(dtype, DTypeRecord):
            raise UnsafePickleError("numpy array state does not hold an allowed dtype")
        shape = _check_int_tuple(shape, "numpy array shape")
        if not isinstance(is_fortran, bool) or not isinstance(raw, (bytes, bytearray)):
            raise UnsafePickleError("numpy array state must hold raw bytes (object arrays are refused)")
        dt = dtype.numpy
        if math.prod(shape) * dt.itemsize != len(raw):
            raise CheckpointError(
                f"numpy array of shape {list(shape)} ({dt}) needs {math.prod(shape) * dt.itemsize} bytes, "
                f"the pickle holds {len(raw)}"
            )
        self.array = np.frombuffer(raw, dtype=dt).reshape(shape, order="F" if is_fortran else "C")

    def __repr__(self) -> str:
        return f"ArrayRecord({None if self.array is None else list(self.array.shape)})"


class EasyDictStub(dict, metaclass=_FrozenMeta):
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict (attribute access is not needed)."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        # A real EasyDict keeps everything in the dict items; its __dict__ state is empty.
        if state is not None and not isinstance(state, dict):
            raise UnsafePickleError("EasyDict state is not a dict")


class TFNetworkStub(metaclass=_FrozenMeta):
    """Stand-in for ``dnnlib.tflib.network.Network`` (TensorFlow StyleGAN2 pickles).

    ``state`` receives the pickled dict (``version``, ``name``, ``static_kwargs``,
    ``components``, ``variables``, ...) minus ``build_module_src``, which is dropped unread.
    """

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state: dict | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise UnsafePickleError("TensorFlow Network state is not a dict")
        if getattr(self, "state", None) is not None:
            raise UnsafePickleError("TensorFlow Network state set twice")
        self.state = {k: v for k, v in state.items() if k != "build_module_src"}

    def __repr__(self) -> str:
        name = None if self.state is None else self.state.get("name")
        return f"TFNetworkStub({name!r})"


class _NdarrayMarker(metaclass=_FrozenMeta):
    """Stand-in for ``numpy.ndarray``: only usable as the first argument of ``_reconstruct``."""

    __slots__ = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> "_NdarrayMarker":
        raise UnsafePickleError("pickle tried to instantiate numpy.ndarray directly")


class _SafeCallable(_Inert):
    """An allow-listed callable: a validated wrapper plus the global name it stands for."""

    __slots__ = ("_fn", "_qualname")

    def __init__(self, fn: Callable[..., Any], qualname: str) -> None:
        self._fn = fn
        self._qualname = qualname

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs:
            raise UnsafePickleError(f"{self._qualname} called with keyword arguments")
        return self._fn(*args)

    def __repr__(self) -> str:
        return f"<safe stand-in for {self._qualname}>"


# --------------------------------------------------------------------------------------------
# Validating wrappers for the allowed callables
# --------------------------------------------------------------------------------------------


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or len(value) > _MAX_NDIM:
        raise UnsafePickleError(f"{what} must be a short tuple of integers")
    if not all(_is_int(v) and v >= 0 for v in value):
        raise UnsafePickleError(f"{what} must hold non-negative integers, got {value!r}")
    return tuple(value)


def _reconstruct_persistent_obj(meta: Any) -> PersistentObject:
    # Keep class name and state; never look at (let alone exec) meta['module_src'].
    if not isinstance(meta, dict):
        raise UnsafePickleError("_reconstruct_persistent_obj argument is not a dict")
    class_name = meta.get("class_name")
    state = meta.get("state")
    if meta.get("type", "class") != "class" or not isinstance(class_name, str):
        raise UnsafePickleError("persistent object meta has no class name or an unknown type")
    if not isinstance(state, dict):
        raise UnsafePickleError(f"persistent object {class_name!r} has no state dict")
    src = meta.get("module_src")
    return PersistentObject(class_name, state, meta.get("version"), len(src) if isinstance(src, str) else 0)


def _make_dict(*args: Any) -> dict:
    # OrderedDict() in a pickle is followed by SETITEMS; plain dicts keep insertion order.
    if not args:
        return {}
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        items = args[0]
        if all(isinstance(it, (list, tuple)) and len(it) == 2 for it in items):
            return {k: v for k, v in items}
    raise UnsafePickleError("collections.OrderedDict called with unexpected arguments")


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> TensorRecord:
    if not isinstance(storage, StorageRecord):
        raise UnsafePickleError("_rebuild_tensor_v2: first argument is not a tensor storage")
    if not _is_int(storage_offset) or storage_offset < 0:
        raise UnsafePickleError("_rebuild_tensor_v2: storage offset must be a non-negative integer")
    size = _check_int_tuple(size, "_rebuild_tensor_v2 size")
    stride = _check_int_tuple(stride, "_rebuild_tensor_v2 stride")
    if len(size) != len(stride):
        raise UnsafePickleError("_rebuild_tensor_v2: size and stride differ in length")
    if not isinstance(requires_grad, bool):
        raise UnsafePickleError("_rebuild_tensor_v2: requires_grad must be a bool")
    # Hooks are never serialised by torch (always an empty OrderedDict); anything else is refused.
    if backward_hooks not in (None, {}) or not (metadata is None or isinstance(metadata, dict)):
        raise UnsafePickleError("_rebuild_tensor_v2: unexpected hooks or metadata")
    numel = storage.flat.numel()
    if math.prod(size) > numel:
        # only zero / overlapping strides can do this; copying such a view could allocate far
        # more memory than the file holds
        raise CheckpointError(f"tensor of size {list(size)} has more elements than its storage ({numel})")
    if 0 not in size:
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= numel:
            raise CheckpointError(
                f"tensor of size {list(size)} (offset {storage_offset}, stride {list(stride)}) "
                f"does not fit its storage of {numel} elements"
            )
    tensor = storage.flat.as_strided(size, stride, storage_offset)
    return TensorRecord(tensor)


def _rebuild_parameter(data: Any, requires_grad: Any = True, backward_hooks: Any = None, *rest: Any) -> TensorRecord:
    # Also serves _rebuild_parameter_with_state, whose extra argument (python state) is ignored.
    if not isinstance(data, TensorRecord) or not isinstance(requires_grad, bool):
        raise UnsafePickleError("_rebuild_parameter: argument is not a rebuilt tensor")
    if backward_hooks not in (None, {}) or len(rest) > 1 or (rest and not isinstance(rest[0], (dict, type(None)))):
        raise UnsafePickleError("_rebuild_parameter: unexpected hooks or state")
    return TensorRecord(data.tensor, is_parameter=True)


def _load_from_bytes(blob: Any) -> StorageRecord:
    if not isinstance(blob, (bytes, bytearray)):
        raise UnsafePickleError("torch.storage._load_from_bytes argument is not bytes")
    return read_legacy_storage(bytes(blob))


def _numpy_dtype(spec: Any, align: Any = False, copy: Any = True) -> DTypeRecord:
    if not isinstance(spec, str) or spec not in _NUMPY_DTYPE_SPECS:
        raise UnsafePickleError(f"numpy.dtype({spec!r}) is not an allowed numeric dtype")
    if not isinstance(align, bool) or not isinstance(copy, bool):
        raise UnsafePickleError("numpy.dtype called with non-bool flags")
    return DTypeRecord(spec)


def _numpy_scalar(dtype: Any, data: Any = None) -> int | float | bool | complex:
    # Returned as a plain Python number so that no numpy object can be the target of BUILD.
    if not isinstance(dtype, DTypeRecord) or not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError("numpy scalar must be built from an allowed dtype and raw bytes")
    dt = dtype.numpy
    if len(data) != dt.itemsize:
        raise CheckpointError(f"numpy scalar of dtype {dt} has {len(data)} bytes")
    return np.frombuffer(data, dtype=dt)[0].item()


def _numpy_reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> ArrayRecord:
    if subtype is not _NdarrayMarker or not isinstance(dtype_code, (bytes, str)):
        raise UnsafePickleError("numpy _reconstruct may only create a plain numpy.ndarray")
    _check_int_tuple(shape, "numpy _reconstruct shape")
    return ArrayRecord()


def allowed_globals() -> dict[tuple[str, str], Any]:
    """The allow-list: ``(module, name)`` as found in a pickle -> the inert stand-in used instead.

    Everything else is refused by :meth:`SafeUnpickler.find_class`.
    """
    table: dict[tuple[str, str], Any] = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _SafeCallable(
            _reconstruct_persistent_obj, "torch_utils.persistence._reconstruct_persistent_obj"
        ),
        ("dnnlib.util", "EasyDict"): EasyDictStub,
        ("dnnlib.tflib.network", "Network"): TFNetworkStub,
        ("collections", "OrderedDict"): _SafeCallable(_make_dict, "collections.OrderedDict"),
        ("torch._utils", "_rebuild_tensor_v2"): _SafeCallable(_rebuild_tensor_v2, "torch._utils._rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"): _SafeCallable(_rebuild_parameter, "torch._utils._rebuild_parameter"),
        ("torch._utils", "_rebuild_parameter_with_state"): _SafeCallable(
            _rebuild_parameter, "torch._utils._rebuild_parameter_with_state"
        ),
        ("torch.storage", "_load_from_bytes"): _SafeCallable(_load_from_bytes, "torch.storage._load_from_bytes"),
        ("numpy", "dtype"): _SafeCallable(_numpy_dtype, "numpy.dtype"),
        ("numpy", "ndarray"): _NdarrayMarker,
    }
    for core in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(core, "scalar")] = _SafeCallable(_numpy_scalar, f"{core}.scalar")
        table[(core, "_reconstruct")] = _SafeCallable(_numpy_reconstruct, f"{core}._reconstruct")
    return table


class SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only :func:`allowed_globals` and refuses persistent ids.

    ``source`` (usually the file path) is used in error messages.
    """

    def __init__(self, file: io.BufferedIOBase, *, source: str = "<pickle>") -> None:
        super().__init__(file)
        self._source = source
        self._allowed = allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except (KeyError, TypeError):
            raise UnsafePickleError(
                f"{self._source}: refused to load global '{module}.{name}': it is not on the allow-list "
                "of known-safe network pickle contents (the file may try to run code)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self._source}: refused persistent id {str(pid)[:80]!r} (not used by network pickles)")


# --------------------------------------------------------------------------------------------
# Legacy (non-zip) torch.save storage blobs, as produced by torch.storage's __reduce__
# --------------------------------------------------------------------------------------------

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _StorageType(_Inert):
    __slots__ = ("dtype",)

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


class _StorageRef(_Inert):
    __slots__ = ("key", "dtype", "numel", "view")

    def __init__(self, key: str, dtype: torch.dtype, numel: int, view: tuple[int, int] | None) -> None:
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.view = view


class _StorageBlobUnpickler(pickle.Unpickler):
    """Reads the small pickles inside a legacy storage blob: only ``torch.<T>Storage`` globals."""

    def __init__(self, file: io.BytesIO, refs: list[_StorageRef]) -> None:
        super().__init__(file)
        self._refs = refs

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise UnsafePickleError(f"refused to load global '{module}.{name}' inside a tensor storage blob")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise UnsafePickleError("tensor storage blob has an unexpected persistent id")
        _, stype, key, location, numel, view = pid
        if not isinstance(stype, _StorageType) or not isinstance(key, str) or not isinstance(location, str):
            raise UnsafePickleError("tensor storage blob has an invalid storage reference")
        if not _is_int(numel) or numel < 0:
            raise UnsafePickleError("tensor storage blob declares an invalid element count")
        view_span = None
        if view is not None:
            # Very old torch: (view_key, offset, size) into the root storage.
            if not (isinstance(view, tuple) and len(view) == 3 and _is_int(view[1]) and _is_int(view[2])):
                raise UnsafePickleError("tensor storage blob has an invalid view description")
            view_span = (view[1], view[2])
        ref = _StorageRef(key, stype.dtype, numel, view_span)
        self._refs.append(ref)
        return ref


def read_legacy_storage(blob: bytes) -> StorageRecord:
    """Parse one storage saved by legacy ``torch.save`` (what ``_load_from_bytes`` receives).

    Layout: pickles of the magic number, protocol 1001 and a system-info dict; a pickle whose
    persistent id ``('storage', torch.<T>Storage, key, location, numel, view)`` is the object;
    a pickle of the sorted storage keys; then per key an int64 element count and the raw
    little-endian data. Every declared size is checked against the blob before allocating.

    Returns a :class:`StorageRecord` whose ``flat`` tensor has ``numel`` elements.
    """
    f = io.BytesIO(blob)
    refs: list[_StorageRef] = []
    try:
        magic = _StorageBlobUnpickler(f, refs).load()
        if magic != _LEGACY_MAGIC:
            raise CheckpointError("tensor storage blob does not start with the torch.save magic number")
        protocol = _StorageBlobUnpickler(f, refs).load()
        if protocol != _LEGACY_PROTOCOL:
            raise UnsupportedCheckpointError(f"tensor storage blob uses torch.save protocol {protocol!r}")
        sys_info = _StorageBlobUnpickler(f, refs).load()
        if not isinstance(sys_info, dict):
            raise CheckpointError("tensor storage blob has no system-info header")
        if sys_info.get("little_endian", True) is not True:
            raise UnsupportedCheckpointError("tensor storage was saved on a big-endian machine")
        root = _StorageBlobUnpickler(f, refs).load()
        keys = _StorageBlobUnpickler(f, refs).load()
    except (CheckpointError, UnsafePickleError):
        raise
    except Exception as exc:  # EOFError, UnpicklingError, ... from a damaged blob
        raise CheckpointError(f"corrupt tensor storage blob ({type(exc).__name__}: {exc})") from exc
    if not isinstance(root, _StorageRef) or len(refs) != 1:
        raise CheckpointError("tensor storage blob does not hold exactly one storage")
    if keys != [root.key]:
        raise CheckpointError("tensor storage blob has an inconsistent storage key list")
    pos = f.tell()
    if pos + 8 > len(blob):
        raise CheckpointError("tensor storage blob is truncated (no element count)")
    stored_numel = int.from_bytes(blob[pos : pos + 8], "little", signed=True)
    if stored_numel != root.numel:
        raise CheckpointError(f"tensor storage blob declares {root.numel} elements but stores {stored_numel}")
    itemsize = torch.empty((), dtype=root.dtype).element_size()
    start, end = pos + 8, pos + 8 + root.numel * itemsize
    if end != len(blob):
        raise CheckpointError(
            f"tensor storage blob size mismatch: {root.numel} x {itemsize} bytes declared, "
            f"{len(blob) - start} present"
        )
    if root.numel == 0:
        flat = torch.empty(0, dtype=root.dtype)
    else:
        flat = torch.frombuffer(bytearray(memoryview(blob)[start:end]), dtype=root.dtype)  # one copy
    if root.view is not None:
        offset, size = root.view
        if offset < 0 or size < 0 or offset + size > flat.numel():
            raise CheckpointError("tensor storage view lies outside its storage")
        flat = flat[offset : offset + size]
    return StorageRecord(flat)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------



_MEMO_PUTS = ("PUT", "BINPUT", "LONG_BINPUT")


def _prescan(stream: Any, size: int, source: str) -> None:
    """Walk the opcodes of ``stream`` (``size`` bytes) once without building anything.

    ``pickletools`` reads each length-prefixed argument from the stream, which returns at most
    what is left, so a truncated file or a length larger than the file fails here with no
    allocation. Frame lengths are checked against the bytes left, and memo indices against the
    number of opcodes read so far: a real pickler numbers its memo entries 0, 1, 2, ..., and the
    unpickler sizes its memo table by the largest index, so a 9-byte file could otherwise ask
    for gigabytes.
    """
    ops = 0
    try:
        for op, arg, pos in pickletools.genops(stream):
            ops += 1
            name = op.name
            if name == "FRAME" and arg > size - pos:
                raise CheckpointError(
                    f"{source}: truncated or corrupt pickle (a {arg}-byte frame at byte {pos} runs past the end of the file)"
                )
            if name in _MEMO_PUTS and arg > ops:
                raise CheckpointError(
                    f"{source}: corrupt or hostile pickle (memo index {arg} at byte {pos}, after only {ops} opcodes)"
                )
            if name in ("PERSID", "BINPERSID"):
                raise UnsafePickleError(f"{source}: refused persistent id at byte {pos} (not used by network pickles)")
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{source}: truncated or corrupt pickle ({exc})") from exc


def _unpickle(stream: Any, source: str) -> Any:
    """Unpickle ``stream`` (already walked by :func:`_prescan`), every error one line."""
    try:
        return SafeUnpickler(stream, source=source).load()
    except UnsafePickleError as exc:
        if str(exc).startswith(source):
            raise
        raise UnsafePickleError(f"{source}: {exc}") from None
    except CheckpointError as exc:
        raise type(exc)(f"{source}: {exc}") from exc
    except RecursionError as exc:
        raise CheckpointError(f"{source}: pickle is nested too deeply") from exc
    except Exception as exc:  # EOFError, UnpicklingError, TypeError, ValueError, MemoryError...
        raise CheckpointError(f"{source}: truncated or corrupt pickle ({type(exc).__name__}: {exc})") from exc


def load_pickle_bytes(data: bytes, *, source: str = "<pickle>") -> Any:
    """Unpickle ``data`` with :class:`SafeUnpickler`.

    Returns plain containers holding records from this module. Raises
    :class:`~spatial_latent.errors.UnsafePickleError` for a refused global and
    :class:`~spatial_latent.errors.CheckpointError` for truncated or corrupt data; no other
    exception type escapes.
    """
    if not data:
        raise CheckpointError(f"{source}: empty pickle")
    _prescan(io.BytesIO(data), len(data), source)
    return _unpickle(io.BytesIO(data), source)


class _GuardedReader:
    """The file object :func:`_prescan` walks: every read is checked before it is made.

    ``read(n)`` refuses ``n`` beyond :data:`_MAX_PICKLE_ARG` (no network pickle holds a single
    string, byte blob or frame that large; a real StyleGAN2 tensor is at most tens of MB) and
    never asks for more than the file has left; ``readline`` stops after
    :data:`_MAX_PICKLE_LINE` bytes (text opcodes hold short lines). The unpickler then reads the
    same, now validated, opcodes from the plain file.
    """

    def __init__(self, f: Any, size: int, source: str) -> None:
        self._f, self._size, self._source = f, size, source

    def read(self, n: int | None = -1) -> bytes:
        pos = self._f.tell()
        left = self._size - pos
        if n is None or n < 0:
            n = left
        if n > _MAX_PICKLE_ARG:
            raise CheckpointError(
                f"{self._source}: corrupt or hostile pickle (reading {n} bytes at byte {pos}: no network pickle "
                f"holds a single item over {_MAX_PICKLE_ARG} bytes)"
            )
        return self._f.read(min(n, left))

    def readline(self) -> bytes:
        return self._f.readline(_MAX_PICKLE_LINE)

    def tell(self) -> int:
        return self._f.tell()

    def seek(self, pos: int) -> int:
        return self._f.seek(pos)


_MAX_PICKLE_ARG = 256 << 20
_MAX_PICKLE_LINE = 1 << 20


def load_pickle_file(path: str | os.PathLike, *, source: str | None = None) -> Any:
    """Unpickle the file ``path`` like :func:`load_pickle_bytes`, streaming it.

    The file is never read whole: the opcodes are walked once through :class:`_GuardedReader`
    (every declared length checked against the file and a per-item cap before it is read), then
    unpickled from the file, so only the bytes the pickle consumes are read (a sparse file of
    4 GB apparent size whose pickle ends after 300 KB costs 300 KB). A file larger than
    :data:`~spatial_latent.limits.MAX_CHECKPOINT_BYTES` is refused up front.
    """
    source = str(path) if source is None else source
    try:
        size = check_file_size(path, MAX_CHECKPOINT_BYTES, "network pickle")
        if size == 0:
            raise CheckpointError(f"{source}: empty pickle")
        with open(path, "rb") as f:
            _prescan(_GuardedReader(f, size, source), size, source)
            f.seek(0)
            return _unpickle(f, source)
    except OSError as exc:
        raise CheckpointError(f"{source}: cannot read checkpoint file ({exc})") from exc
