"""Models from files: ``torch.export`` archives, state dicts with a factory, TorchScript, whole pickled modules.

Users bring trained models in the forms their tools save them in (bpnet-lite's ``torch.save(model)``, a
training loop's ``torch.save(model.state_dict())``, a deployment's ``torch.export.save``). :func:`load_model`
reads what the file *is* from its bytes (:func:`model_file_kind`), never by trying loaders in turn, loads it
the one way that fits, and otherwise says what the file holds and what was expected.

Unpickling runs code named by the file, so a file holding anything but tensors is unpickled only when the
caller says it is trusted (``trust_pickle=True``); state dicts load with ``torch.load(weights_only=True)``,
which refuses everything but tensors and plain containers.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import pickle
import pickletools
import struct
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import torch

from .errors import ProbeError

__all__ = ["load_model", "model_file_kind", "check_single_output", "ExportedModule", "SelectOutput",
           "STATE_DICT_KEYS", "MODEL_FILE_KINDS"]

#: Keys under which training checkpoints commonly nest the model's state dict, in the order searched.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model_state", "model", "net", "network", "module", "weights")

#: What :func:`model_file_kind` can answer, and how messages name each kind.
MODEL_FILE_KINDS = {
    "export": "a torch.export archive (torch.export.save)",
    "aoti": "an AOTInductor package (torch._inductor.aoti_compile_and_package)",
    "torchscript": "a TorchScript archive (torch.jit.save)",
    "torch": "a torch.save file",
    "torch_legacy": "a torch.save file in the legacy (pre-1.6) format",
    "pickle": "a Python pickle not written by torch.save (pickle.dump, joblib)",
    "safetensors": "a safetensors file",
    "hdf5": "an HDF5 file (a Keras/TensorFlow model such as an official ChromBPNet .h5?)",
    "npy": "a NumPy .npy array",
    "npz": "a NumPy .npz archive",
    "zip": "a zip archive that no torch saver wrote",
    "unknown": "neither a zip archive nor a pickle",
}

# prefixes that wrappers add to every state-dict key: DataParallel/DistributedDataParallel, torch.compile
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# torch.save's magic number, the first pickled object of a legacy-format file
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_EXPECTED = ("expected a torch.export archive (.pt2), a state_dict (.pt/.pth/.bin) with a factory, a TorchScript "
             "archive or a whole pickled module (with trust_pickle / --trust-pickle)")


def _few(names: list[str], k: int = 4) -> str:
    """``'a', 'b', 'c' and 7 more``: a few names, the rest counted."""
    shown = ", ".join(repr(n) for n in names[:k])
    return shown + (f" and {len(names) - k} more" if len(names) > k else "")


# --------------------------------------------------------------------------------------------- file kinds


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except zipfile.BadZipFile as err:
        raise ProbeError(f"model file '{path}' looks like a zip archive but cannot be read ({err}); "
                         "it may be truncated") from None
    tails = {n.split("/", 1)[1] if "/" in n else n for n in names}
    if any(t.startswith("data/aotinductor/") for t in tails):
        return "aoti"
    if "archive_format" in tails or "models/model.json" in tails or "serialized_exported_program.json" in tails:
        return "export"
    if "constants.pkl" in tails or any(t.startswith("code/") for t in tails):
        return "torchscript"
    if "data.pkl" in tails:
        return "torch"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    return "zip"


def _is_legacy_torch(head: bytes) -> bool:
    # a pickle (protocol 2+) whose first object is LONG1 holding torch's 10-byte magic number
    if len(head) < 14 or head[0] != 0x80 or head[2] != 0x8A or head[3] != 10:
        return False
    return int.from_bytes(head[4:14], "little") == _LEGACY_MAGIC


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 0 < n <= size - 8 and head[8:9] == b"{"


def model_file_kind(path: str | os.PathLike) -> str:
    """What a model file is, read from its bytes (never by trying loaders).

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    str
        A key of :data:`MODEL_FILE_KINDS`: ``"export"`` (a zip whose entries include ``archive_format`` or
        ``models/model.json``), ``"aoti"``, ``"torchscript"`` (a zip with ``constants.pkl`` or ``code/``),
        ``"torch"`` (a zip with ``data.pkl``), ``"torch_legacy"`` (a pickle that starts with torch's magic
        number), ``"pickle"``, ``"safetensors"``, ``"hdf5"``, ``"npy"``, ``"npz"``, ``"zip"`` or ``"unknown"``.

    Raises
    ------
    ProbeError
        If ``path`` does not exist, is a directory or cannot be read.
    """
    path = Path(path)
    if not path.exists():
        raise ProbeError(f"model file '{path}' does not exist; {_EXPECTED}")
    if path.is_dir():
        raise ProbeError(f"model file '{path}' is a directory; {_EXPECTED}")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as err:
        raise ProbeError(f"model file '{path}' cannot be read: {err}") from None
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _zip_kind(path)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if _is_legacy_torch(head):
        return "torch_legacy"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if _is_safetensors(head, path.stat().st_size):
        return "safetensors"
    return "unknown"


# ------------------------------------------------------------------------------------------- pickles


def _pickle_globals(path: Path, kind: str) -> list[str]:
    """The ``module.name`` globals a pickle would import, read with pickletools (nothing is executed)."""
    found: list[str] = []
    strings: list[str] = []
    try:
        if kind == "torch":
            with zipfile.ZipFile(path) as z:
                entry = next(n for n in z.namelist() if n.endswith("data.pkl"))
                ops = list(pickletools.genops(z.read(entry)))
        else:
            with open(path, "rb") as f:
                ops = []
                for _ in range(4 if kind == "torch_legacy" else 1):  # magic, protocol, sys info, then the object
                    ops = list(pickletools.genops(f))
    except Exception:  # a damaged pickle: the message then names no classes
        return found
    for op, arg, _ in ops:
        if op.name in ("GLOBAL", "INST"):
            found.append(str(arg).replace(" ", "."))
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            found.append(f"{strings[-2]}.{strings[-1]}")
        if isinstance(arg, str):
            strings.append(arg)
    return list(dict.fromkeys(found))


def _code_globals(path: Path, kind: str) -> list[str]:
    """The globals beyond torch's tensor rebuilding and plain containers: the classes unpickling would run."""
    # torch's top-level names (storages, dtypes, Size, device) and _utils rebuild tensors; torch.nn classes count
    plain = ("torch._utils.", "collections.OrderedDict", "builtins.", "__builtin__.", "_codecs.",
             "numpy.core.multiarray.", "numpy.dtype")
    return [g for g in _pickle_globals(path, kind)
            if not g.startswith(plain) and not (g.startswith("torch.") and g.count(".") == 1)]


def _load_pickle(path: Path, kind: str, *, trust_pickle: bool, map_location: object) -> object:
    """Unpickle a torch.save file (weights only unless trusted) or, when trusted, a plain pickle."""
    if kind == "pickle" and not trust_pickle:
        raise _untrusted(path, kind)
    try:
        if kind == "pickle":
            with open(path, "rb") as f:
                return pickle.load(f)  # the caller declared the file trusted
        return torch.load(path, map_location=map_location, weights_only=not trust_pickle)
    except pickle.UnpicklingError as err:
        if not trust_pickle and "weights only" in str(err).lower():
            raise _untrusted(path, kind) from None
        raise ProbeError(f"model file '{path}' ({MODEL_FILE_KINDS[kind]}) cannot be unpickled: "
                         f"{str(err).splitlines()[0]}") from None
    except (ModuleNotFoundError, AttributeError) as err:
        raise ProbeError(f"model file '{path}' holds a pickled object whose code cannot be found ({err}); install "
                         "the package that defined the model (the same version it was saved with)") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise ProbeError(f"model file '{path}' ({MODEL_FILE_KINDS[kind]}) cannot be loaded: "
                         f"{str(err).splitlines()[0]}; the file may be damaged or truncated") from None


def _untrusted(path: Path, kind: str) -> ProbeError:
    classes = _code_globals(path, kind)
    what = f"pickled Python objects of {_few(classes, 3)}" if classes else "pickled Python objects beyond tensors"
    return ProbeError(
        f"model file '{path}' ({MODEL_FILE_KINDS[kind]}) holds {what}, which loading with weights_only=True "
        "refuses: unpickling them runs code named by the file. If you trust the file, pass trust_pickle=True "
        "(--trust-pickle); or re-save it as torch.save(model.state_dict(), ...) and give a factory, or "
        "with torch.export.save")


# --------------------------------------------------------------------------------------- state dicts


def _is_tensor_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())


def _describe(obj: object) -> str:
    """What an unpickled object is, for a message."""
    if torch.is_tensor(obj):
        return f"a single tensor of shape {tuple(obj.shape)} ({obj.dtype}), not a model"
    if isinstance(obj, Mapping):
        keys = [str(k) for k in obj]
        if not keys:
            return "an empty dict"
        if "state" in obj and "param_groups" in obj:
            return "an optimiser state_dict (keys 'state', 'param_groups'), not the model's weights"
        return f"a dict with keys {_few(keys, 6)} but no model weights (looked for a dict of tensors, also " \
               f"under {_few(list(STATE_DICT_KEYS), 3)})"
    if isinstance(obj, (list, tuple)):
        return f"a {type(obj).__name__} of {len(obj)} item(s), not a model"
    return f"a {type(obj).__module__}.{type(obj).__qualname__} object, not a torch.nn.Module"


def _find_weights(obj: object) -> dict[str, torch.Tensor] | torch.nn.Module | None:
    """A state dict (or, from a trusted pickle, a module) in ``obj`` itself or under a common key."""
    if _is_tensor_dict(obj) or isinstance(obj, torch.nn.Module):
        return obj
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            inner = obj.get(key)
            if _is_tensor_dict(inner) or isinstance(inner, torch.nn.Module):
                return inner
    return None


def _strip(keys: list[str], prefix: str) -> list[str] | None:
    return [k[len(prefix):] for k in keys] if keys and all(k.startswith(prefix) for k in keys) else None


def _common_head(keys: list[str]) -> str | None:
    heads = {k.split(".", 1)[0] + "." for k in keys if "." in k}
    return heads.pop() if len(heads) == 1 and all("." in k for k in keys) else None


def _align_keys(state: dict[str, torch.Tensor], wanted: list[str]) -> dict[str, torch.Tensor]:
    """Rename the file's keys to the model's when they differ only by a whole leading component.

    Wrapper prefixes (``module.`` from DataParallel, ``_orig_mod.`` from torch.compile) are always dropped.
    Beyond them, one common leading component is dropped from the file's keys (the file was saved from a
    wrapper, e.g. bpnet-lite's ``CountWrapper``: ``model.iconv.weight``) or the model's own is added (the
    model is the wrapper), but only where that makes the two key sets equal, so no tensor can land in the
    wrong place.
    """
    keys = list(state)
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            stripped = _strip(keys, prefix)
            if stripped is not None:
                keys, changed = stripped, True
    target = set(wanted)
    if set(keys) != target:
        head, model_head = _common_head(keys), _common_head(wanted)
        candidates = [_strip(keys, head) if head else None, [model_head + k for k in keys] if model_head else None]
        keys = next((c for c in candidates if c is not None and set(c) == target), keys)
    return dict(zip(keys, state.values()))


def _check_fit(state: dict[str, torch.Tensor], model: torch.nn.Module, path: Path, factory: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k!r}: file {tuple(v.shape)}, model {tuple(own[k].shape)}" for k, v in state.items()
              if k in own and tuple(v.shape) != tuple(own[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s) ({_few(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) ({_few(unexpected)})")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es) ({'; '.join(shapes[:3])}"
                     + (f" and {len(shapes) - 3} more)" if len(shapes) > 3 else ")"))
    if parts:
        raise ProbeError(f"the state_dict in '{path}' does not fit the model built by {factory!r}: "
                         f"{', '.join(parts)}; check that the factory and its keyword arguments build the "
                         "architecture the weights were saved from")


# ----------------------------------------------------------------------------------------- factories


@contextlib.contextmanager
def _on_sys_path(folder: str) -> Iterator[None]:
    # for the duration of the import only, so that a model file can import its siblings
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)


def _import_file(file: Path, spec: str) -> object:
    if not file.is_file():
        raise ProbeError(f"factory {spec!r}: the file '{file}' does not exist")
    name = "_probe_factory_" + "".join(c if c.isalnum() else "_" for c in file.stem)
    module_spec = importlib.util.spec_from_file_location(name, file)
    if module_spec is None or module_spec.loader is None:
        raise ProbeError(f"factory {spec!r}: '{file}' cannot be imported as Python")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        with _on_sys_path(str(file.resolve().parent)):
            module_spec.loader.exec_module(module)
    except Exception as err:
        sys.modules.pop(name, None)
        raise ProbeError(f"factory {spec!r}: importing '{file}' failed: {type(err).__name__}: {err}") from None
    return module


def _import_module(name: str, spec: str) -> object:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name is None or not (name == err.name or name.startswith(err.name + ".")):
            raise ProbeError(f"factory {spec!r}: importing module {name!r} failed: {err} (a module it imports "
                             "is not installed)") from None
        searched = [p or "''" for p in sys.path]
        here = os.getcwd()
        cwd_note = "" if ("" in sys.path or here in sys.path) else (
            f"; the current directory '{here}' is not on sys.path (the `probe` script does not add it)")
        raise ProbeError(
            f"factory {spec!r}: cannot import module {name!r} ({err}); searched sys.path {_few(searched, 3)}"
            f"{cwd_note}; give the module's file instead (path/to/{name.rsplit('.', 1)[-1]}.py:"
            f"{spec.rpartition(':')[2]}) or add its folder to PYTHONPATH") from None
    except Exception as err:
        raise ProbeError(f"factory {spec!r}: importing module {name!r} failed: {type(err).__name__}: {err}") from None


def _resolve_factory(spec: str) -> Callable[..., object]:
    """``module:function`` or ``path/to/file.py:function`` (dotted attributes allowed) -> the callable."""
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr or not all(part.isidentifier() for part in attr.split(".")):
        raise ProbeError(f"factory {spec!r} is not 'module:function' or 'path/to/file.py:function'")
    is_file = where.endswith(".py") or os.sep in where or "/" in where
    module = _import_file(Path(where), spec) if is_file else _import_module(where, spec)
    obj: object = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
            raise ProbeError(f"factory {spec!r}: {where!r} has no attribute {attr!r}; its callables include "
                             f"{_few(public, 6) if public else 'none'}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ProbeError(f"factory {spec!r} is a {type(obj).__name__}, not a callable")
    return obj


def _factory_kwargs(kwargs: Mapping[str, object] | str | None, spec: str) -> dict[str, object]:
    if kwargs is None:
        return {}
    if isinstance(kwargs, str):
        try:
            kwargs = json.loads(kwargs)
        except json.JSONDecodeError as err:
            raise ProbeError(f"factory keyword arguments for {spec!r} are not JSON ({err}): {kwargs!r}") from None
    if not isinstance(kwargs, Mapping):
        raise ProbeError(f"factory keyword arguments for {spec!r} must be a JSON object (a dict), "
                         f"got {type(kwargs).__name__}")
    return dict(kwargs)


def _build(spec: str, kwargs: Mapping[str, object] | str | None) -> object:
    fn = _resolve_factory(spec)
    kw = _factory_kwargs(kwargs, spec)
    try:
        model = fn(**kw)
    except TypeError as err:
        raise ProbeError(f"factory {spec!r} called with {kw or 'no arguments'} failed: {err}") from None
    if not callable(model):
        raise ProbeError(f"factory {spec!r} returned a {type(model).__name__}, not a model")
    return model


# ------------------------------------------------------------------------------------ export archives


class ExportedModule(torch.nn.Module):
    """A ``torch.export`` program as a module that any batch size can call and that ``eval()`` leaves working.

    The program's own module (``ExportedProgram.module()``) refuses ``train()`` and ``eval()``, which every
    ``probe`` function calls to restore the caller's model, so the program is unflattened
    (``torch.export.unflatten``) into a module with the original hierarchy, whose mode flags can be set.
    The graph runs as it was exported: a program exported in training mode keeps its dropout and batch
    statistics whatever the flags say (:func:`load_model` warns).

    A program exported with a fixed batch size ``B`` (no ``dynamic_shapes``) is called on chunks of ``B``
    inputs, the last chunk padded by repeating its final input and the padding's outputs dropped; that is
    exact for models that treat inputs independently, as models in eval mode do.

    Parameters
    ----------
    program : torch.export.ExportedProgram
        The loaded program, with one tensor input.

    Attributes
    ----------
    fixed_batch : int or None
        The batch size the program was exported with, or None where that dimension is dynamic.
    """

    def __init__(self, program: torch.export.ExportedProgram):
        super().__init__()
        with warnings.catch_warnings():
            # torch's own deprecation inside unflatten (it deep-copies LeafSpec); nothing the caller can change
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                    category=FutureWarning)
            self.inner = torch.export.unflatten(program)
        self.fixed_batch = _fixed_batch(program)

    def forward(self, x: torch.Tensor) -> object:
        b = self.fixed_batch
        if b is None or x.shape[0] == b:
            return self.inner(x)
        outs = []
        for start in range(0, x.shape[0], b):
            chunk = x[start:start + b]
            n = chunk.shape[0]
            if n < b:
                chunk = torch.cat([chunk, chunk[-1:].expand(b - n, *chunk.shape[1:])])
            outs.append(_take(self.inner(chunk), n))
        return _cat(outs)


def _take(out: object, n: int) -> object:
    if torch.is_tensor(out):
        return out[:n]
    if isinstance(out, (tuple, list)):
        return type(out)(_take(o, n) for o in out)
    if isinstance(out, Mapping):
        return {k: _take(v, n) for k, v in out.items()}
    return out


def _cat(outs: list[object]) -> object:
    first = outs[0]
    if torch.is_tensor(first):
        return torch.cat(outs)
    if isinstance(first, (tuple, list)):
        return type(first)(_cat([o[i] for o in outs]) for i in range(len(first)))
    if isinstance(first, Mapping):
        return {k: _cat([o[k] for o in outs]) for k in first}
    return first


def _user_input_nodes(program: torch.export.ExportedProgram) -> list:
    names = set(program.graph_signature.user_inputs)
    return [n for n in program.graph.nodes if n.op == "placeholder" and n.name in names]


def _fixed_batch(program: torch.export.ExportedProgram) -> int | None:
    val = _user_input_nodes(program)[0].meta.get("val")
    if val is None or not hasattr(val, "shape") or len(val.shape) == 0:
        return None
    return val.shape[0] if isinstance(val.shape[0], int) else None


def _trained_ops(program: torch.export.ExportedProgram) -> list[str]:
    """Dropout and batch-norm calls exported in training mode (their ``train``/``training`` argument)."""
    found = []
    for node in program.graph.nodes:
        target = str(node.target)
        if target == "aten.dropout.default" and len(node.args) > 2 and node.args[2] is True:
            found.append("dropout")
        elif target == "aten.batch_norm.default" and len(node.args) > 5 and node.args[5] is True:
            found.append("batch_norm")
        elif target in ("aten.native_dropout.default", "aten._native_batch_norm_legit.default"):
            found.append(target.split(".")[1])
    return sorted(set(found))


def _load_export(path: Path, map_location: object) -> ExportedModule:
    try:
        program = torch.export.load(path)
    except Exception as err:
        raise ProbeError(f"model file '{path}' ({MODEL_FILE_KINDS['export']}) cannot be loaded with this torch "
                         f"({torch.__version__}): {type(err).__name__}: {str(err).splitlines()[0]}") from None
    inputs = _user_input_nodes(program)
    if len(inputs) != 1:
        raise ProbeError(f"model file '{path}' is a torch.export program with {len(inputs)} inputs "
                         f"({_few([n.name for n in inputs])}); probe calls a model with one tensor: export a "
                         "module whose forward takes only the input batch")
    trained = _trained_ops(program)
    if trained:
        warnings.warn(f"model file '{path}' was exported in training mode ({', '.join(trained)} in training "
                      "mode): outputs may be random or depend on the batch; export after model.eval()", stacklevel=4)
    if map_location is not None:
        from torch.export.passes import move_to_device_pass

        program = move_to_device_pass(program, map_location)
    return ExportedModule(program)


# ------------------------------------------------------------------------------------------ outputs


class SelectOutput(torch.nn.Module):
    """One output of a model that returns a tuple, list or dict (bpnet-lite's BPNet returns (profile, counts)).

    Parameters
    ----------
    model : torch.nn.Module or callable
    output : int or str
        Index into a tuple/list output, or key of a dict output.
    """

    def __init__(self, model: Callable[[torch.Tensor], object], output: int | str):
        super().__init__()
        self.model = model
        self.output = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        try:
            return out[self.output]
        except (IndexError, KeyError, TypeError):
            what = (f"{len(out)} outputs" if isinstance(out, (tuple, list)) else
                    f"keys {_few([str(k) for k in out])}" if isinstance(out, Mapping) else type(out).__name__)
            raise ProbeError(f"output {self.output!r} was asked for, but the model returns {what}") from None


def check_single_output(model: Callable[[torch.Tensor], object], x: torch.Tensor, *, source: str = "the model"
                        ) -> None:
    """Raise ``ProbeError`` when ``model(x)`` is a tuple, list or dict rather than one tensor.

    Parameters
    ----------
    model : callable
    x : torch.Tensor, shape (N, ...)
        A small example batch.
    source : str, default "the model"
        How the message names the model (its file).

    Raises
    ------
    ProbeError
        Naming the outputs' shapes and how to choose one (``output=`` / ``--model-output``).
    """
    with torch.no_grad():
        out = model(x)
    if isinstance(out, (tuple, list)):
        shapes = ", ".join(f"[{i}] {tuple(o.shape) if torch.is_tensor(o) else type(o).__name__}"
                           for i, o in enumerate(out))
        raise ProbeError(f"{source} returns a {type(out).__name__} of {len(out)} outputs ({shapes}); choose one "
                         "with output=INDEX (--model-output INDEX), e.g. 1 for bpnet-lite's counts")
    if isinstance(out, Mapping):
        raise ProbeError(f"{source} returns a dict with keys {_few([str(k) for k in out])}; choose one with "
                         "output=KEY (--model-output KEY)")


# ---------------------------------------------------------------------------------------- the loader


def _looks_like_factory(spec: str) -> bool:
    if os.path.exists(spec):
        return False
    where, sep, attr = spec.rpartition(":")
    return bool(sep and where and attr) and all(p.isidentifier() for p in attr.split("."))


def _load_file(path: Path, factory: str | None, factory_kwargs: Mapping[str, object] | str | None,
               trust_pickle: bool, map_location: object) -> Callable[[torch.Tensor], object]:
    kind = model_file_kind(path)
    what = MODEL_FILE_KINDS[kind]
    if kind in ("export", "torchscript") and factory is not None:
        raise ProbeError(f"model file '{path}' is {what}, which holds its own code: a factory ({factory!r}) "
                         "is used only with a state_dict")
    if kind == "export":
        return _load_export(path, map_location)
    if kind == "torchscript":
        if not hasattr(torch.jit, "load"):
            raise ProbeError(f"model file '{path}' is {what}, which this torch ({torch.__version__}) no longer "
                             "loads; re-save the model with torch.export.save")
        try:
            return torch.jit.load(str(path), map_location=map_location)
        except RuntimeError as err:
            raise ProbeError(f"model file '{path}' ({what}) cannot be loaded: {str(err).splitlines()[0]}") from None
    if kind == "safetensors":
        return _with_factory(_load_safetensors(path, map_location), path, factory, factory_kwargs, map_location)
    if kind not in ("torch", "torch_legacy", "pickle"):
        start = ""
        if kind == "unknown":
            with open(path, "rb") as f:
                start = f" (it starts with {f.read(12)!r})"
        if kind == "hdf5":
            start = ("; a ChromBPNet/BPNet Keras .h5 converts to torch with bpnet-lite (BPNet.from_chrombpnet(path)"
                     "); save the result with torch.export.save, or torch.save(model) to load with trust_pickle")
        raise ProbeError(f"model file '{path}' is {what}{start}; {_EXPECTED}")
    obj = _load_pickle(path, kind, trust_pickle=trust_pickle, map_location=map_location)
    found = _find_weights(obj)
    if found is None:
        raise ProbeError(f"model file '{path}' ({what}) holds {_describe(obj)}; {_EXPECTED}")
    if isinstance(found, torch.nn.Module):
        if factory is not None:
            raise ProbeError(f"model file '{path}' holds a whole module ({type(found).__qualname__}); a factory "
                             f"({factory!r}) is used only with a state_dict")
        return found.to(map_location) if map_location is not None else found
    return _with_factory(found, path, factory, factory_kwargs, map_location)


def _load_safetensors(path: Path, map_location: object) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ProbeError(f"model file '{path}' is {MODEL_FILE_KINDS['safetensors']}; reading it needs the "
                         "safetensors package (pip install safetensors)") from None
    device = "cpu" if map_location is None else str(map_location)
    try:
        return load_file(str(path), device=device)
    except Exception as err:
        raise ProbeError(f"model file '{path}' ({MODEL_FILE_KINDS['safetensors']}) cannot be read: {err}") from None


def _with_factory(state: dict[str, torch.Tensor], path: Path, factory: str | None,
                  factory_kwargs: Mapping[str, object] | str | None, map_location: object) -> torch.nn.Module:
    if factory is None:
        raise ProbeError(f"model file '{path}' holds a state_dict ({len(state)} tensors, e.g. {_few(list(state), 3)})"
                         ", only weights: give the factory that builds the model, factory='module:function' "
                         "(--factory module:function, or path/to/file.py:function)")
    try:
        model = _build(factory, factory_kwargs)
    except ProbeError as err:
        raise ProbeError(f"model file '{path}' (a state_dict): {err}") from None
    if not isinstance(model, torch.nn.Module):
        raise ProbeError(f"factory {factory!r} returned a {type(model).__name__}; loading the state_dict in "
                         f"'{path}' needs a torch.nn.Module")
    state = _align_keys(state, list(model.state_dict()))
    _check_fit(state, model, path, factory)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ProbeError(f"the state_dict in '{path}' does not load into the model built by {factory!r}: "
                         f"{str(err).splitlines()[0]}") from None
    return model.to(map_location) if map_location is not None else model


def load_model(spec: str | os.PathLike, *, factory: str | None = None,
               factory_kwargs: Mapping[str, object] | str | None = None, trust_pickle: bool = False,
               map_location: str | torch.device | None = "cpu", output: int | str | None = None
               ) -> Callable[[torch.Tensor], object]:
    """Load a model from a file (or build it from a factory), in eval mode.

    What the file is comes from its bytes (:func:`model_file_kind`):

    - a ``torch.export`` archive (``torch.export.save``, ``.pt2``) -> :class:`ExportedModule`;
    - a state dict (``torch.save(model.state_dict())``; ``.pt``/``.pth``/``.bin``, or a safetensors file),
      also nested in a checkpoint under one of :data:`STATE_DICT_KEYS`, with ``factory`` -> the factory's
      module with those weights, loaded with ``strict=True``. Keys prefixed ``module.`` (DataParallel) or
      ``_orig_mod.`` (torch.compile) are renamed, as is one whole leading component where that alone makes
      the file's keys equal the model's (weights saved from a wrapper such as bpnet-lite's ``CountWrapper``);
    - a whole pickled module (``torch.save(model)``, as bpnet-lite saves its models), only with
      ``trust_pickle=True``, since unpickling runs code that the file names;
    - a TorchScript archive (``torch.jit.save``), while torch still loads them.

    Parameters
    ----------
    spec : str or os.PathLike
        The model file, or, with no file of that name, a factory ``module:function`` or
        ``path/to/file.py:function`` whose model is used with the weights it builds.
    factory : str, optional
        ``module:function`` or ``path/to/file.py:function`` (dotted attributes allowed, e.g.
        ``pkg.models:Net.small``) that builds the module a state dict's weights load into. A file is imported
        with its folder on ``sys.path`` for the import, so it may import its neighbours.
    factory_kwargs : dict or str, optional
        Keyword arguments for the factory, or a JSON object of them (``'{"n_filters": 64}'``). Default: none.
    trust_pickle : bool, default False
        Unpickle files holding Python objects beyond tensors (``weights_only=False``). Only for files from
        a source you trust.
    map_location : str or torch.device or None, default "cpu"
        Where the weights go (``torch.load``'s ``map_location``); None keeps the devices they were saved on.
    output : int or str, optional
        For a model returning a tuple/list (an index) or a dict (a key): the output to use
        (:class:`SelectOutput`); e.g. 1 for the counts of bpnet-lite's ``BPNet``.

    Returns
    -------
    torch.nn.Module or callable
        The model, in eval mode where it is a module.

    Raises
    ------
    ProbeError
        Naming the file and saying what it is and what was expected: not found, a directory, neither zip nor
        pickle, a state dict without a factory, a state dict that does not fit the factory's model (missing,
        unexpected and mis-shaped keys, a few named and the rest counted), a factory that cannot be
        imported (with the ``sys.path`` searched), a TorchScript or export archive given a factory, a tensor,
        an optimiser checkpoint, or pickled objects without ``trust_pickle``.

    Examples
    --------
    >>> model = probe.load_model("weights.pt", factory="mypkg.models:make_bpnet",
    ...                          factory_kwargs={"n_layers": 9})            # doctest: +SKIP
    >>> model = probe.load_model("model.pt2")                                  # doctest: +SKIP
    >>> model = probe.load_model("bpnet.torch", trust_pickle=True, output=1)   # doctest: +SKIP
    """
    spec_str = os.fspath(spec)
    if factory is None and _looks_like_factory(spec_str):
        model = _build(spec_str, factory_kwargs)
        if isinstance(model, torch.nn.Module) and map_location is not None:
            model.to(map_location)
    else:
        model = _load_file(Path(spec_str), factory, factory_kwargs, trust_pickle, map_location)
    if isinstance(model, torch.nn.Module):
        model.eval()
    if output is not None:
        model = SelectOutput(model, output).eval()
    return model
