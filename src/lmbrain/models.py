"""Resolving and loading language models: HF hub names, local folders, packages, GGUF files.

A model entry of the configuration is a dict with the keys

``model``
    A Hugging Face hub name (``"gpt2"``, ``"org/name"``), a local folder, or
    ``"package:<python_package>"``: the folder of an installed Python package that ships
    weights (the shallowest folder inside it holding a model ``config.json``).
``gguf_file`` (optional)
    A GGUF file inside that folder (or on the hub repository). Transformers dequantizes it;
    the dequantized model is converted once and cached under ``<cache>/converted/``. A
    package that splits its GGUF into parts and offers ``assemble(output_path)`` is
    assembled once into ``<cache>/gguf/``.
``revision`` (optional)
    A hub model's branch, tag or commit hash, passed to ``from_pretrained`` (and part of the
    feature id): pin a commit hash to make sure a rerun loads the same weights. Hub models
    only; the resolved commit is recorded in each feature file (``revision`` attribute,
    :func:`lmbrain.provenance.model_revision`).
``untrained`` / ``seed`` (optional)
    A randomly initialised twin: same config and tokenizer, weights drawn with ``seed``.
``name``, ``family``, ``n_layers`` (optional)
    Id used in file names, family label, and a block-count override.

Only the base model is loaded (``AutoModel``: no language-model head, which would be wasted
compute for hidden states).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import re
import shutil
import struct
from collections.abc import Mapping
from pathlib import Path

from lmbrain.audio import is_audio_config
from lmbrain.errors import ConfigError, InputError
from lmbrain.io import make_temp_dir
from lmbrain.provenance import model_revision

PACKAGE_PREFIX = "package:"
HUB_HINT = "not a local folder and not found on the Hugging Face hub (offline?)"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers", "encoder_layers")
_SUB_CONFIGS = ("text_config", "language_config", "llm_config", "decoder")
_N_LAYERS_CACHE = "n_layers.json"
#: Passed to every transformers ``Auto*`` loader: a model folder's own Python files
#: (``auto_map`` in its config, ``configuration_*.py``, ``modeling_*.py``) are never run, and
#: transformers never asks on stdin whether to run them (it would, with the default ``None``;
#: ``yes y | snakemake`` would then run them). A model that needs its own code is not supported.
NO_REMOTE_CODE = {"trust_remote_code": False}


# ---------------------------------------------------------------------------------------------
# ids and sources


def sanitize(text: str) -> str:
    """Make ``text`` filesystem-safe.

    ``/`` becomes ``--``, every other character outside ``[A-Za-z0-9._-]`` becomes ``_``, and
    leading ``-`` / ``.`` are dropped (no hidden files, nothing that reads as an option).
    """
    return _UNSAFE.sub("_", str(text).replace("/", "--")).lstrip("-.") or "model"


def model_id(entry: Mapping) -> str:
    """Stable, filesystem-safe id of a model entry.

    Parameters
    ----------
    entry : mapping
        Model entry (see the module docstring).

    Returns
    -------
    str
        ``entry["name"]`` when given (sanitized); otherwise the ``model`` string with ``/``
        replaced by ``--`` and every character outside ``[A-Za-z0-9._-]`` by ``_``, plus
        ``-rev-<revision>`` for a pinned hub ``revision`` (so the checkpoints of one model,
        e.g. Pythia's ``step1000``, ``step143000``, get distinct ids without names) and
        ``-untrained-s<seed>`` for an untrained twin. A baseline entry (``baseline:``, see
        :mod:`lmbrain.baselines`) is named by its ``name`` alone.
    """
    if isinstance(entry, Mapping) and entry.get("baseline") and entry.get("name"):
        return sanitize(entry["name"])
    _check_entry(entry)
    if entry.get("name"):
        return sanitize(entry["name"])
    mid = sanitize(entry["model"])
    if entry.get("revision") is not None:
        mid += f"-rev-{sanitize(str(entry['revision']))}"
    if entry.get("untrained"):
        mid += f"-untrained-s{int(entry.get('seed') or 0)}"
    return mid


def _check_entry(entry) -> None:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("model"), str):
        raise ConfigError("models", f"a model entry needs a `model` string, got {entry!r}")
    if not entry["model"].strip():
        raise ConfigError("models.model", "empty model name")


def _looks_local(source: str) -> bool:
    """Whether ``source`` can only be a filesystem path (hub ids are ``name`` or ``org/name``)."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source


def resolve_source(entry: Mapping, cache_dir: str | Path) -> tuple[Path | str, Path | str | None]:
    """Where a model's files are.

    Parameters
    ----------
    entry : mapping
        Model entry.
    cache_dir : str or Path
        Cache folder (assembled GGUF files go to ``<cache_dir>/gguf/``).

    Returns
    -------
    source : Path or str
        Local folder (``Path``) or hub name (``str``).
    gguf : Path, str or None
        Local GGUF file (``Path``), GGUF file name in a hub repository (``str``), or None.

    Raises
    ------
    InputError
        A package that is not installed, a local folder or GGUF file that does not exist.
    """
    _check_entry(entry)
    source, gguf = _resolve_source(entry, cache_dir)
    if entry.get("revision") is not None and not isinstance(source, str):
        raise ConfigError(
            "models.revision",
            f"'{entry['model']}' is a local folder or package: a revision applies to hub models",
        )
    return source, gguf


def _hub_kwargs(entry: Mapping, source) -> dict:
    """``{"revision": ...}`` for a hub model whose entry pins one, else ``{}``."""
    revision = entry.get("revision")
    return {"revision": str(revision)} if revision is not None and isinstance(source, str) else {}


def _resolve_source(entry: Mapping, cache_dir: str | Path):
    source = entry["model"].strip()
    gguf_file = entry.get("gguf_file")
    if source.startswith(PACKAGE_PREFIX):
        return _resolve_package(source[len(PACKAGE_PREFIX) :], gguf_file, Path(cache_dir))
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".gguf" and not gguf_file:
        return path.parent, path
    if path.is_dir():
        if not gguf_file:
            return path, None
        gguf = path / gguf_file
        if not gguf.is_file():
            raise InputError(gguf, "GGUF file not found in the model folder")
        return path, gguf
    if _looks_local(source):
        raise InputError(source, "model folder does not exist")
    return source, gguf_file


def _package_folder(package: str) -> Path:
    """Folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise InputError(
            PACKAGE_PREFIX + package,
            f"Python package '{package}' is not installed (pip install it)",
        )
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(spec.origin).parent


def _resolve_package(package: str, gguf_file: str | None, cache_dir: Path):
    folder = _package_folder(package)
    if not gguf_file:
        return _config_folder(folder), None
    direct = folder / gguf_file
    if direct.is_file():
        return folder, direct
    nested = sorted(folder.rglob(gguf_file), key=lambda p: len(p.parts))
    if nested:
        return nested[0].parent, nested[0]
    target = cache_dir / "gguf" / gguf_file
    if not target.is_file():
        _assemble(package, target)
    return target.parent, target


def _config_folder(folder: Path) -> Path:
    """Shallowest folder under ``folder`` whose ``config.json`` describes a model."""
    for cfg in sorted(folder.rglob("config.json"), key=lambda p: (len(p.parts), str(p))):
        if "__pycache__" in cfg.parts:
            continue
        with contextlib.suppress(OSError, ValueError):
            if "model_type" in json.loads(cfg.read_text()):
                return cfg.parent
    return folder


def _assemble(package: str, target: Path) -> None:
    """Assemble a split GGUF with the package's ``assemble(output_path)`` (atomically)."""
    module = importlib.import_module(package)
    assemble = getattr(module, "assemble", None)
    if assemble is None:
        raise InputError(
            PACKAGE_PREFIX + package,
            f"GGUF file '{target.name}' is not in the package and it has no assemble()",
        )
    tmp = make_temp_dir(target)  # removed by the next try if this process is killed
    try:
        out = assemble(tmp / target.name)
        os.replace(Path(out) if out else tmp / target.name, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# number of layers, cheaply


def read_n_layers(entry: Mapping, cache_dir: str | Path) -> int:
    """Number of transformer blocks of a model, without loading its weights.

    Order: the entry's ``n_layers``; a GGUF file's ``<arch>.block_count``; a local
    ``config.json``; ``transformers.AutoConfig`` for a hub name. Results are cached in
    ``<cache_dir>/n_layers.json`` keyed by source, GGUF file and modification time.

    Parameters
    ----------
    entry : mapping
        Model entry.
    cache_dir : str or Path
        Cache folder.

    Returns
    -------
    int

    Raises
    ------
    InputError
        When the count cannot be found (the message suggests setting ``n_layers:``).
    """
    if entry.get("n_layers") is not None:
        return int(entry["n_layers"])
    source, gguf = resolve_source(entry, cache_dir)
    hub = _hub_kwargs(entry, source)
    key = _n_layers_key(source, gguf) + (f"|{hub['revision']}" if hub else "")
    cache_file = Path(cache_dir) / _N_LAYERS_CACHE
    cache = _read_json(cache_file)
    if key in cache:
        return int(cache[key])
    n_layers = _compute_n_layers(source, gguf, **hub)
    cache[key] = n_layers
    with contextlib.suppress(OSError):
        from lmbrain.io import save_json

        save_json(cache_file, cache)
    return n_layers


def read_modality(entry: Mapping, cache_dir: str | Path) -> str:
    """``"audio"`` for a speech model (:data:`lmbrain.audio.AUDIO_MODEL_TYPES`), else ``"text"``.

    Read from the model's config without loading weights: a local ``config.json``, or
    ``transformers.AutoConfig`` for a hub name; GGUF files are language models. A config that
    cannot be read counts as text (loading the model reports the problem).
    """
    source, gguf = resolve_source(entry, cache_dir)
    if gguf is not None:
        return "text"
    if isinstance(source, Path):
        config = _read_json(_config_folder(source) / "config.json")
    else:
        try:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(
                source, **_hub_kwargs(entry, source), **NO_REMOTE_CODE
            ).to_dict()
        except (OSError, ValueError, KeyError):
            return "text"
    return "audio" if is_audio_config(config) else "text"


def _n_layers_key(source, gguf) -> str:
    stamp_file = None
    if isinstance(gguf, Path):
        stamp_file = gguf
    elif isinstance(source, Path):
        stamp_file = source / "config.json"
    stamp = stamp_file.stat().st_mtime_ns if stamp_file and stamp_file.exists() else "hub"
    return f"{source}|{gguf}|{stamp}"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _compute_n_layers(source, gguf, **hub) -> int:
    hint = "set `n_layers:` for this model in the config"
    if isinstance(gguf, Path):
        meta = gguf_metadata(gguf)
        arch = meta.get("general.architecture")
        count = meta.get(f"{arch}.block_count")
        if count is None:
            raise InputError(gguf, f"GGUF metadata has no '{arch}.block_count'; {hint}")
        return int(count)
    if isinstance(source, Path):
        cfg_file = source / "config.json"
        if not cfg_file.is_file():
            raise InputError(source, f"no config.json in the model folder; {hint}")
        n_layers = n_layers_from_config(json.loads(cfg_file.read_text()))
        if n_layers is None:
            raise InputError(cfg_file, f"no layer count (num_hidden_layers, n_layer); {hint}")
        return n_layers
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(source, gguf_file=gguf, **hub, **NO_REMOTE_CODE)
    except (OSError, ValueError) as exc:
        raise InputError(
            source, f"cannot read the model config: {HUB_HINT}; {hint} ({exc})"
        ) from exc
    n_layers = n_layers_from_config(config.to_dict())
    if n_layers is None:
        raise InputError(source, f"the model config has no layer count; {hint}")
    return n_layers


def n_layers_from_config(config: Mapping) -> int | None:
    """Block count from a config dict (``num_hidden_layers``, ``n_layer``, ``text_config``...)."""
    for key in _LAYER_KEYS:
        if isinstance(config.get(key), int):
            return int(config[key])
    for key in _SUB_CONFIGS:
        if isinstance(config.get(key), Mapping):
            found = n_layers_from_config(config[key])
            if found is not None:
                return found
    return None


# GGUF value types (gguf.GGUFValueType): fixed-size scalars as struct formats.
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q"}
_GGUF_SCALARS[12] = "d"
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def gguf_metadata(path: str | Path) -> dict:
    """Scalar and string metadata of a GGUF file (arrays skipped), read in milliseconds.

    ``gguf.GGUFReader`` parses every tokenizer array (seconds to tens of seconds for large
    vocabularies); this reader streams the key-value header and skips arrays. It falls back
    to ``GGUFReader`` for files it cannot parse (big-endian, GGUF v1).

    Parameters
    ----------
    path : str or Path
        GGUF file.

    Returns
    -------
    dict
        Key -> int, float, bool or str.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return _stream_gguf_kv(fh)
    except (struct.error, ValueError, UnicodeDecodeError):
        return _gguf_reader_kv(path)
    except OSError as exc:
        raise InputError(path, f"cannot read GGUF file ({exc})") from exc


def _stream_gguf_kv(fh) -> dict:
    if fh.read(4) != b"GGUF":
        raise ValueError("not a GGUF file")
    version, _n_tensors, n_kv = struct.unpack("<IQQ", fh.read(20))
    if version not in (2, 3):
        raise ValueError(f"unsupported GGUF version {version}")
    meta = {}
    for _ in range(n_kv):
        key = _gguf_string(fh)
        (vtype,) = struct.unpack("<I", fh.read(4))
        if vtype == _GGUF_ARRAY:
            _skip_gguf_array(fh)
        else:
            meta[key] = _gguf_scalar(fh, vtype)
    return meta


def _gguf_string(fh) -> str:
    (n,) = struct.unpack("<Q", fh.read(8))
    return fh.read(n).decode("utf-8")


def _gguf_scalar(fh, vtype: int):
    if vtype == _GGUF_STRING:
        return _gguf_string(fh)
    fmt = "<" + _GGUF_SCALARS[vtype]
    return struct.unpack(fmt, fh.read(struct.calcsize(fmt)))[0]


def _skip_gguf_array(fh) -> None:
    itype, count = struct.unpack("<IQ", fh.read(12))
    if itype == _GGUF_STRING:
        for _ in range(count):
            (n,) = struct.unpack("<Q", fh.read(8))
            fh.seek(n, os.SEEK_CUR)
    elif itype == _GGUF_ARRAY:
        for _ in range(count):
            _skip_gguf_array(fh)
    else:
        fh.seek(count * struct.calcsize("<" + _GGUF_SCALARS[itype]), os.SEEK_CUR)


def _gguf_reader_kv(path: Path) -> dict:
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
    except Exception as exc:  # any parse failure means a bad input file
        raise InputError(path, f"not a readable GGUF file ({exc})") from exc
    out = {}
    for key, field in reader.fields.items():
        value = field.contents()
        if isinstance(value, int | float | bool | str):
            out[key] = value
    return out


# ---------------------------------------------------------------------------------------------
# loading


def resolve_device(device: str | None) -> str:
    """``"auto"`` (or None) -> ``"cuda"`` when available, else ``"cpu"``; others unchanged."""
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def resolve_dtype(dtype: str, device: str):
    """Compute dtype: as asked on GPU; on CPU float32 unless bfloat16 is asked for."""
    import torch

    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype not in table:
        raise ConfigError("features.dtype", f"unknown dtype {dtype!r}; use one of {list(table)}")
    if str(device).startswith("cpu") and dtype == "float16":
        return torch.float32
    return table[dtype]


def converted_dir(entry: Mapping, cache_dir: str | Path) -> Path:
    """Folder of the cached dequantized conversion of a GGUF entry.

    Keyed by the trained source (``model`` and ``gguf_file``, ignoring ``name``,
    ``untrained`` and ``seed``), so a model and its untrained twin share one conversion.
    """
    stem = Path(str(entry["gguf_file"])).stem
    revision = entry.get("revision")
    tail = f"@{sanitize(str(revision))}" if revision is not None else ""
    return (
        Path(cache_dir)
        / "converted"
        / f"{model_id({'model': entry['model']})}--{sanitize(stem)}{tail}"
    )


def ensure_converted(entry: Mapping, cache_dir: str | Path) -> Path:
    """Dequantize a GGUF entry once into a regular HF folder (model + tokenizer); reuse it.

    Parameters
    ----------
    entry : mapping
        Model entry with ``gguf_file``.
    cache_dir : str or Path
        Cache folder.

    Returns
    -------
    Path
        The converted folder; it appears (atomically renamed into place) only when complete.
    """
    out = converted_dir(entry, cache_dir)
    if (out / "config.json").is_file():
        return out
    source, gguf = resolve_source(entry, cache_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out)  # the umask's mode; leftovers of killed conversions go (lmbrain.io)
    try:
        _convert_gguf(source, gguf, tmp, **_hub_kwargs(entry, source))
        try:
            os.replace(tmp, out)
        except OSError:  # another process finished first
            if not (out / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


class _PlainMemmapNumpy:
    """numpy, except that ``memmap`` returns a plain ndarray view of the mapped file.

    gguf's ``GGUFReader`` slices its ``np.memmap`` once per metadata value, and every slice of
    a memmap runs numpy's Python-level ``memmap.__getitem__`` and ``__array_finalize__``: for
    Gemma-3's 262,144-token vocabulary that is 13 million calls, a third of the conversion's
    CPU (49.5 -> 31.4 s for Gemma-3-270M, 19.8 -> 13.7 s for SmolLM2-135M, one thread,
    BENCHMARKS.md). The view reads the same mapped bytes, so the tensors are unchanged.
    """

    def __init__(self, numpy_module):
        self._np = numpy_module

    def __getattr__(self, name):
        return getattr(self._np, name)

    def memmap(self, *args, **kwargs):
        return self._np.memmap(*args, **kwargs).view(self._np.ndarray)


@contextlib.contextmanager
def _plain_gguf_arrays():
    """Within the block, gguf's reader maps files as plain arrays and each file is read once.

    - :class:`_PlainMemmapNumpy` replaces the reader module's numpy;
    - ``gguf.GGUFReader`` returns one reader per (file, mode): transformers builds a reader
      for the tokenizer, another for the config and a third for the weights, and each parses
      the whole metadata again (Gemma-3's vocabulary: 5 s a time).

    A gguf release that no longer reads through ``gguf.gguf_reader.np.memmap`` keeps its
    memmap; the readers are only shared inside the block (the conversion).
    """
    try:
        import gguf
        import gguf.gguf_reader as reader
    except ImportError:
        yield
        return
    original_np = getattr(reader, "np", None)
    original_cls = getattr(gguf, "GGUFReader", None)
    readers: dict = {}

    def shared_reader(path, mode="r"):
        key = (os.fspath(path), mode)
        if key not in readers:
            readers[key] = original_cls(path, mode)
        return readers[key]

    if original_np is not None and hasattr(original_np, "memmap"):
        reader.np = _PlainMemmapNumpy(original_np)
    if original_cls is not None:
        gguf.GGUFReader = shared_reader
    try:
        yield
    finally:
        if original_np is not None:
            reader.np = original_np
        if original_cls is not None:
            gguf.GGUFReader = original_cls
        readers.clear()


def _convert_gguf(source, gguf, out: Path, **hub) -> None:
    """Dequantize ``gguf`` with transformers and save model and tokenizer to ``out``."""
    with _plain_gguf_arrays():
        _convert_gguf_files(source, gguf, out, **hub)


def _convert_gguf_files(source, gguf, out: Path, **hub) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder, name = (gguf.parent, gguf.name) if isinstance(gguf, Path) else (source, gguf)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, **hub, **NO_REMOTE_CODE)
        model = AutoModel.from_pretrained(
            folder,
            gguf_file=name,
            dtype=torch.float32,
            **hub,
            **_dequantize_kwargs(name),
            **NO_REMOTE_CODE,
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise InputError(
            gguf, f"cannot load GGUF file with transformers ({type(exc).__name__}: {exc})"
        ) from exc
    _drop_quantizer(model)
    stored = half_storage_dtype(model)
    model.to(stored)
    model.save_pretrained(out)  # safetensors
    tokenizer.save_pretrained(out)
    info = {"source": str(source), "gguf_file": str(gguf), "stored_dtype": str(stored)[6:]}
    (out / "lmbrain_conversion.json").write_text(json.dumps(info, indent=2) + "\n")


def half_storage_dtype(model):
    """Half-precision dtype for caching a dequantized GGUF model: float16, else bfloat16.

    A 4- or 8-bit GGUF block dequantizes to ``d * q (+ m)`` with float16 scales, so its
    values carry quantization steps far coarser than float16's relative rounding (4.9e-4);
    caching them in float16 halves the converted folder (the demo's 1.8 GB of float32
    weights) and the loader upcasts to the compute dtype. float16 keeps 3 more mantissa bits
    than bfloat16 but tops out at 65,504, so a model with any larger finite weight or buffer
    is cached in bfloat16 (same range as float32) instead.

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    torch.dtype
    """
    import torch

    largest = 0.0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point() and tensor.numel():
            largest = max(largest, float(tensor.detach().abs().max()))
    return torch.float16 if largest <= torch.finfo(torch.float16).max else torch.bfloat16


def _dequantize_kwargs(name: str) -> dict:
    """Ask recent transformers (which can keep GGUF blocks packed) for a dense model."""
    try:
        from transformers import GgufConfig
    except ImportError:  # older transformers always dequantize GGUF weights
        return {}
    return {"quantization_config": GgufConfig(gguf_file=name, dequantize=True)}


def _drop_quantizer(model) -> None:
    """Forget the (already dequantized) GGUF quantizer so the dense model saves normally."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    elif hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def _load_tokenizer(folder, source, **hub):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, **hub, **NO_REMOTE_CODE)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(source, f"cannot load the tokenizer: {_why(source)} ({exc})") from exc


def _load_feature_extractor(folder, source, **hub):
    """The feature extractor of a speech model (sampling rate, normalisation, log-mel)."""
    from transformers import AutoFeatureExtractor

    try:
        return AutoFeatureExtractor.from_pretrained(folder, **hub, **NO_REMOTE_CODE)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(
            source, f"cannot load the audio feature extractor: {_why(source)} ({exc})"
        ) from exc


def _why(source) -> str:
    return "broken model folder" if isinstance(source, Path) else HUB_HINT


def _load_config(folder, source, **hub):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(folder, **hub, **NO_REMOTE_CODE)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(source, f"cannot load the model config: {_why(source)} ({exc})") from exc


def _load_weights(folder, source, dtype, device_map=None, **hub):
    from transformers import AutoModel

    extra = {} if device_map is None else {"device_map": device_map}
    extra.update(hub)
    try:
        return AutoModel.from_pretrained(folder, dtype=dtype, **extra, **NO_REMOTE_CODE)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(source, f"cannot load the model: {_why(source)} ({exc})") from exc


def _random_twin(config, seed: int, dtype, device_map=None):
    """``AutoModel.from_config`` under a private RNG seeded with ``seed``.

    The weights are drawn on the CPU (so they do not depend on the device); with a
    ``device_map`` the model is then dispatched like a pretrained one (accelerate's
    ``infer_auto_device_map`` for ``"auto"``/``"balanced"``..., or the given dict).
    """
    import torch
    from transformers import AutoModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        # drawn in float32 whatever dtype the config records (a half-precision GGUF cache
        # says float16), so a twin's weights depend only on the architecture and the seed
        model = AutoModel.from_config(config, dtype=torch.float32, **NO_REMOTE_CODE)
    model = model.to(dtype)
    if device_map is None:
        return model
    from accelerate import dispatch_model, infer_auto_device_map

    if isinstance(device_map, str):
        no_split = getattr(model, "_no_split_modules", None) or []
        device_map = infer_auto_device_map(model, no_split_module_classes=no_split, dtype=dtype)
    return dispatch_model(model, device_map=device_map)


def load_model(
    entry: Mapping,
    cache_dir: str | Path,
    device: str = "cpu",
    dtype: str = "float32",
    device_map: str | Mapping | None = None,
) -> tuple:
    """Load the base model (no LM head) and tokenizer of an entry, in eval mode.

    Parameters
    ----------
    entry : mapping
        Model entry (see the module docstring).
    cache_dir : str or Path
        Cache folder (assembled and converted GGUF models, layer counts).
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``... or ``"auto"`` (cuda when available).
    dtype : {"float32", "float16", "bfloat16"}
        Compute dtype; on CPU float32 is used unless bfloat16 is asked for.
    device_map : str or mapping, optional
        Passed to ``from_pretrained`` (``"auto"``, ``"balanced"``, ``"sequential"`` or a
        ``{module: device}`` dict): the layers are spread over the visible GPUs, then CPU
        memory and disk (accelerate), for models larger than one GPU. ``device`` is then
        ignored (the model is not moved). None (default): the whole model on ``device``.

    Returns
    -------
    model : transformers.PreTrainedModel
    tokenizer : transformers.PreTrainedTokenizerBase
    info : dict
        ``n_params``, ``n_params_nonembedding`` (minus the input token embedding), ``n_layers``,
        ``hidden_size``, ``source`` (the entry's ``model``), ``path`` (resolved folder, hub
        name or GGUF file), ``gguf_file``, ``untrained``, ``seed``,
        ``architecture`` (config ``model_type``), ``model_class``, ``model_id``, ``dtype``,
        ``device``, ``modality``, ``revision`` (:func:`lmbrain.provenance.model_revision`).

    Raises
    ------
    InputError
        Unknown model (neither a local folder nor loadable from the hub), missing package or
        GGUF file, or files transformers cannot read.
    """
    source, gguf = resolve_source(entry, cache_dir)
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    folder = ensure_converted(entry, cache_dir) if gguf is not None else source
    hub = _hub_kwargs(entry, folder)  # a converted GGUF folder is local
    config = _load_config(folder, source, **hub)
    audio = is_audio_config(config)
    tokenizer = (
        _load_feature_extractor(folder, source, **hub)
        if audio
        else _load_tokenizer(folder, source, **hub)
    )
    untrained = bool(entry.get("untrained"))
    seed = int(entry.get("seed") or 0) if untrained else None
    if untrained:
        model = _random_twin(config, seed, torch_dtype, device_map)
    else:
        model = _load_weights(folder, source, torch_dtype, device_map, **hub)
    if device_map is None:
        model.to(device)
    else:
        device = str(next(model.parameters()).device)  # where the inputs go
    model.eval()
    model.requires_grad_(False)
    info = model_info(model)
    info.update(
        {
            "model_id": model_id(entry),
            "source": entry["model"],
            "path": str(gguf if isinstance(gguf, Path) else source),
            "gguf_file": entry.get("gguf_file"),
            "untrained": untrained,
            "seed": seed,
            "dtype": str(torch_dtype).replace("torch.", ""),
            "device": device,
            "modality": "audio" if audio else "text",
            "revision": model_revision(entry, source, config),
        }
    )
    return model, tokenizer, info


def model_info(model) -> dict:
    """Size and shape of a loaded base model.

    Returns
    -------
    dict
        ``n_params`` (unique parameters), ``n_params_nonembedding`` (minus the input token
        embedding matrix; position embeddings stay counted), ``n_layers``, ``hidden_size``,
        ``architecture`` and ``model_class``.
    """
    config = model.config.to_dict()
    n_params = sum(p.numel() for p in model.parameters())
    try:
        embedding = model.get_input_embeddings()
    except NotImplementedError:  # speech models have no token embedding
        embedding = None
    n_embedding = embedding.weight.numel() if embedding is not None else 0
    hidden = _first_int(config, ("hidden_size", "n_embd", "d_model"))
    return {
        "n_params": int(n_params),
        "n_params_nonembedding": int(n_params - n_embedding),
        "n_layers": n_layers_from_config(config),
        "hidden_size": hidden,
        "architecture": config.get("model_type"),
        "model_class": type(model).__name__,
    }


def _first_int(config: Mapping, keys) -> int | None:
    for key in keys:
        if isinstance(config.get(key), int):
            return int(config[key])
    for key in _SUB_CONFIGS:
        if isinstance(config.get(key), Mapping):
            found = _first_int(config[key], keys)
            if found is not None:
                return found
    return None
