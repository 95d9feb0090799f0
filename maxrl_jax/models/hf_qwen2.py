r"""Hugging Face interop for the maze policy: Qwen2 checkpoints <-> the Flax decoder.

The authors ship their supervised maze model (paper section 6.2, appendix L) as a Hugging Face
``Qwen2ForCausalLM`` directory (``config.json`` + ``model.safetensors``; ``maze/ckpt-1500`` in
their repository). This module imports such a directory into the parameters of
:class:`maxrl_jax.models.transformer.Decoder` and exports the decoder back, with
``safetensors.numpy`` only (no PyTorch, no ``transformers``).

The two models compute the same function (see ``transformer.py``): pre-norm blocks with RMSNorm
``x / sqrt(mean(x^2) + eps) * g``, grouped-query attention where query head ``h`` reads key/value
head ``h // (H / H_kv)`` (``repeat_kv``), biases on q/k/v only, rotate-half RoPE with
``inv_freq_j = theta^(-2j/D)``, scores ``q.k / sqrt(D)``, SiLU-gated MLP, final RMSNorm and the
output head tied to the token embedding. A PyTorch ``nn.Linear`` stores ``W`` as
``[out, in]`` and computes ``x W^T + b``; a Flax ``nn.Dense`` stores ``kernel = W^T`` as
``[in, out]``. Heads are contiguous blocks of ``D`` features in both (``view(..., H, D)`` and
``reshape(..., H_kv, G, D)``), so no permutation of rows is needed. In float32 the logits agree
to float32 rounding (RoPE angles are float32 in both). In bfloat16 compute the roundings differ
slightly (e.g. Hugging Face multiplies the RMSNorm gain in the input dtype, the decoder in
float32).

Parameter names (``i`` the layer; Flax paths under ``params``; "T": transposed):

* ``model.embed_tokens.weight`` [V, E] <-> ``embed/embedding`` [V, E]
* ``model.layers.i.input_layernorm.weight`` <-> ``layer_i/input_norm/scale``
* ``model.layers.i.self_attn.{q,k,v}_proj.weight`` <-> ``layer_i/attn/{q,k,v}_proj/kernel`` (T)
* ``model.layers.i.self_attn.{q,k,v}_proj.bias`` <-> ``layer_i/attn/{q,k,v}_proj/bias``
* ``model.layers.i.self_attn.o_proj.weight`` <-> ``layer_i/attn/o_proj/kernel`` (T)
* ``model.layers.i.post_attention_layernorm.weight`` <-> ``layer_i/post_attention_norm/scale``
* ``model.layers.i.mlp.{gate,up,down}_proj.weight`` <-> ``layer_i/mlp/{gate,up,down}_proj/kernel``
  (T)
* ``model.norm.weight`` <-> ``final_norm/scale``
* ``lm_head.weight``: not written; accepted on import only as a copy of the embedding (tied).

``config.json`` fields (Qwen2Config) <-> :class:`DecoderConfig`: ``vocab_size``,
``num_hidden_layers`` -> ``num_layers``, ``hidden_size`` -> ``hidden_dim``,
``intermediate_size`` -> ``mlp_dim``, ``num_attention_heads`` -> ``num_heads``,
``num_key_value_heads`` -> ``num_kv_heads``, ``rope_theta``, ``rms_norm_eps`` -> ``rms_eps``,
``max_position_embeddings`` -> ``max_len``. Features the decoder does not have are refused with a
``ValueError`` naming the field: ``hidden_act`` other than ``silu``, untied embeddings
(``tie_word_embeddings`` false), sliding-window attention (``use_sliding_window`` or a
``layer_types`` entry other than ``full_attention``), any ``rope_scaling`` other than the default,
``partial_rotary_factor`` != 1, or a ``head_dim`` other than ``hidden_size // num_attention_heads``.

Checkpoints are often stored in bfloat16 (the authors': ``"torch_dtype": "bfloat16"``); tensors are
read in their stored dtype and cast to ``cfg.param_dtype`` (:func:`load_safetensors`,
:func:`convert_safetensors`). Upcasting bf16/fp16 to float32 is exact.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import jax.numpy as jnp
import numpy as np

from maxrl_jax.models.transformer import DecoderConfig

__all__ = [
    "HF_ARCHITECTURE", "check_hf_config", "convert_safetensors", "decoder_config_from_hf",
    "hf_config_from_decoder", "hf_tensors_from_params", "load_hf", "load_safetensors",
    "params_from_hf_tensors", "save_hf",
]

HF_ARCHITECTURE = "Qwen2ForCausalLM"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

PathLike = Union[str, os.PathLike]

# (Qwen2Config field, DecoderConfig attribute). ``max_position_embeddings`` is checked separately.
_SIZE_FIELDS = (
    ("vocab_size", "vocab_size"),
    ("num_hidden_layers", "num_layers"),
    ("hidden_size", "hidden_dim"),
    ("intermediate_size", "mlp_dim"),
    ("num_attention_heads", "num_heads"),
    ("num_key_value_heads", "num_kv_heads"),
    ("rope_theta", "rope_theta"),
    ("rms_norm_eps", "rms_eps"),
)
# Qwen2Config defaults for optional fields (the size fields are required here).
_HF_DEFAULTS = {"rope_theta": 10000.0, "rms_norm_eps": 1e-6, "max_position_embeddings": 32768,
                "hidden_act": "silu", "tie_word_embeddings": False, "use_sliding_window": False}

# Safetensors dtype tags <-> NumPy dtypes (bfloat16 via ml_dtypes, a JAX dependency).
_ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": jnp.bfloat16,
              "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
              "BOOL": np.bool_}
_TORCH_DTYPE_NAMES = ("bfloat16", "float16", "float32")


def _safetensors_numpy():
  try:
    import safetensors.numpy as st  # pylint: disable=import-outside-toplevel
  except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("Hugging Face interop needs the 'safetensors' package "
                      "(pip install safetensors)") from e
  return st


# --------------------------------------------------------------------------------------------
# config.json
# --------------------------------------------------------------------------------------------


def _read_hf_config(config: Union[Mapping[str, Any], PathLike]) -> Dict[str, Any]:
  if isinstance(config, Mapping):
    return dict(config)
  path = os.fspath(config)
  if os.path.isdir(path):
    path = os.path.join(path, CONFIG_FILE)
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _rope_theta(hf: Mapping[str, Any]) -> float:
  # transformers >= 5 may nest it in ``rope_parameters``.
  params = hf.get("rope_parameters")
  if isinstance(params, Mapping) and "rope_theta" in params:
    return float(params["rope_theta"])
  return float(hf.get("rope_theta", _HF_DEFAULTS["rope_theta"]))


def check_hf_config(hf_config: Union[Mapping[str, Any], PathLike]) -> Dict[str, Any]:
  """Checks that a Qwen2 ``config.json`` describes a model the decoder can represent.

  Args:
    hf_config: the parsed ``config.json``, its path, or the checkpoint directory.

  Returns:
    The parsed config (a dict).

  Raises:
    ValueError: naming the offending field, for another architecture, a missing size field, or a
      feature the decoder lacks (see the module docstring).
  """
  hf = _read_hf_config(hf_config)
  model_type = hf.get("model_type", "qwen2")
  if model_type != "qwen2":
    raise ValueError(f"config.json field 'model_type' = {model_type!r}: only 'qwen2' is supported")
  archs = hf.get("architectures")
  if archs is not None and HF_ARCHITECTURE not in archs:
    raise ValueError(f"config.json field 'architectures' = {archs!r}: expected {HF_ARCHITECTURE!r}")
  for field in ("vocab_size", "num_hidden_layers", "hidden_size", "intermediate_size",
                "num_attention_heads"):
    if field not in hf:
      raise ValueError(f"config.json field {field!r} is missing")
  act = hf.get("hidden_act", _HF_DEFAULTS["hidden_act"])
  if act != "silu":
    raise ValueError(f"config.json field 'hidden_act' = {act!r}: the decoder's MLP is SiLU-gated "
                     "('silu')")
  if not hf.get("tie_word_embeddings", _HF_DEFAULTS["tie_word_embeddings"]):
    raise ValueError("config.json field 'tie_word_embeddings' is false (or missing, which "
                     "Qwen2Config reads as false): the decoder ties its output head to the "
                     "token embedding")
  if hf.get("use_sliding_window", False):
    raise ValueError("config.json field 'use_sliding_window' is true: the decoder has no "
                     "sliding-window attention")
  layer_types = hf.get("layer_types")
  if layer_types is not None:
    other = sorted({t for t in layer_types if t != "full_attention"})
    if other:
      raise ValueError(f"config.json field 'layer_types' contains {other}: only "
                       "'full_attention' is supported")
    if len(layer_types) != hf["num_hidden_layers"]:
      raise ValueError(f"config.json field 'layer_types' has {len(layer_types)} entries for "
                       f"num_hidden_layers = {hf['num_hidden_layers']}")
  for field in ("rope_scaling", "rope_parameters"):
    scaling = hf.get(field)
    if scaling is None:
      continue
    kind = scaling.get("rope_type", scaling.get("type", "default")) if isinstance(
        scaling, Mapping) else scaling
    if kind != "default":
      raise ValueError(f"config.json field {field!r} = {scaling!r}: only the default RoPE "
                       "(no scaling) is supported")
  factor = hf.get("partial_rotary_factor", 1.0)
  if factor != 1.0:
    raise ValueError(f"config.json field 'partial_rotary_factor' = {factor}: RoPE must rotate "
                     "the whole head")
  head_dim = hf.get("head_dim")
  derived = hf["hidden_size"] // hf["num_attention_heads"]
  if head_dim is not None and head_dim != derived:
    raise ValueError(f"config.json field 'head_dim' = {head_dim}: the decoder needs "
                     f"hidden_size // num_attention_heads = {derived}")
  return hf


def decoder_config_from_hf(hf_config: Union[Mapping[str, Any], PathLike],
                           cfg: Optional[DecoderConfig] = None, **overrides: Any) -> DecoderConfig:
  """The :class:`DecoderConfig` of a Qwen2 ``config.json``, checked.

  Args:
    hf_config: the parsed ``config.json``, its path, or the checkpoint directory.
    cfg: optional config to check against: every architecture field must agree with the file and
      ``cfg.max_len`` must not exceed ``max_position_embeddings``; ``cfg`` is then returned
      (its ``dtype``, ``param_dtype``, ``remat`` are the caller's choice).
    **overrides: without ``cfg``, non-architecture fields for the new config (``dtype``,
      ``param_dtype``, ``remat``; default float32 parameters and compute).

  Raises:
    ValueError: see :func:`check_hf_config`; or a field of ``cfg`` disagreeing with the file (the
      message names both).
  """
  hf = check_hf_config(hf_config)
  values = {attr: hf.get(field) for field, attr in _SIZE_FIELDS}
  if values["num_kv_heads"] is None:  # Qwen2Config: defaults to num_attention_heads
    values["num_kv_heads"] = hf["num_attention_heads"]
  values["rope_theta"] = _rope_theta(hf)
  if values["rms_eps"] is None:
    values["rms_eps"] = _HF_DEFAULTS["rms_norm_eps"]
  max_pos = int(hf.get("max_position_embeddings", _HF_DEFAULTS["max_position_embeddings"]))
  if cfg is not None:
    if overrides:
      raise ValueError("give either cfg or overrides, not both")
    for field, attr in _SIZE_FIELDS:
      mine, theirs = getattr(cfg, attr), values[attr]
      if (float(mine) != float(theirs)) if isinstance(mine, float) else (mine != theirs):
        raise ValueError(f"config.json field {field!r} = {theirs} disagrees with "
                         f"DecoderConfig.{attr} = {mine}")
    if cfg.max_len > max_pos:
      raise ValueError(f"DecoderConfig.max_len = {cfg.max_len} exceeds config.json field "
                       f"'max_position_embeddings' = {max_pos}")
    cfg.validate()
    return cfg
  unknown = set(overrides) - {"dtype", "param_dtype", "remat"}
  if unknown:
    raise ValueError(f"overrides: only dtype, param_dtype, remat may be given, got "
                     f"{sorted(unknown)}")
  for attr in ("vocab_size", "num_layers", "hidden_dim", "mlp_dim", "num_heads", "num_kv_heads"):
    values[attr] = int(values[attr])
  values["rms_eps"] = float(values["rms_eps"])
  out = DecoderConfig(**values, max_len=max_pos, **overrides)
  out.validate()
  return out


def hf_config_from_decoder(cfg: DecoderConfig, *, torch_dtype: Optional[str] = None,
                           bos_token_id: Optional[int] = 1, eos_token_id: Optional[int] = 2,
                           pad_token_id: Optional[int] = 0) -> Dict[str, Any]:
  """A Qwen2 ``config.json`` dict for ``cfg`` (``Qwen2ForCausalLM``, tied embeddings).

  The special-token ids default to the maze vocabulary's (``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2);
  ``torch_dtype`` (also written as ``dtype``) defaults to ``cfg.param_dtype`` and should name the
  dtype the tensors are stored in.
  """
  cfg.validate()
  dtype = torch_dtype or cfg.param_dtype
  if dtype not in _TORCH_DTYPE_NAMES:
    raise ValueError(f"torch_dtype: one of {sorted(_TORCH_DTYPE_NAMES)}, got {dtype!r}")
  hf = {
      "architectures": [HF_ARCHITECTURE],
      "attention_dropout": 0.0,
      "bos_token_id": bos_token_id,
      "dtype": dtype,
      "eos_token_id": eos_token_id,
      "hidden_act": "silu",
      "hidden_size": cfg.hidden_dim,
      "initializer_range": 0.02,
      "intermediate_size": cfg.mlp_dim,
      "layer_types": ["full_attention"] * cfg.num_layers,
      "max_position_embeddings": cfg.max_len,
      "max_window_layers": cfg.num_layers,
      "model_type": "qwen2",
      "num_attention_heads": cfg.num_heads,
      "num_hidden_layers": cfg.num_layers,
      "num_key_value_heads": cfg.num_kv_heads,
      "pad_token_id": pad_token_id,
      "rms_norm_eps": cfg.rms_eps,
      "rope_scaling": None,
      "rope_theta": float(cfg.rope_theta),
      "sliding_window": None,
      "tie_word_embeddings": True,
      "torch_dtype": dtype,
      "use_cache": True,
      "use_sliding_window": False,
      "vocab_size": cfg.vocab_size,
  }
  return {k: v for k, v in hf.items() if v is not None or k in ("rope_scaling", "sliding_window")}


# --------------------------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------------------------


def _read_safetensors_raw(path: PathLike) -> Dict[str, np.ndarray]:
  """Reads a safetensors file by its format (little-endian u64 header size, JSON header, data).

  Used when the installed ``safetensors`` cannot give NumPy bfloat16 arrays (older releases).
  """
  with open(path, "rb") as f:
    (size,) = struct.unpack("<Q", f.read(8))
    header = json.loads(f.read(size))
    data = f.read()
  out = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    if info["dtype"] not in _ST_DTYPES:
      raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']}")
    begin, end = info["data_offsets"]
    dt = np.dtype(_ST_DTYPES[info["dtype"]]).newbyteorder("<")
    arr = np.frombuffer(data[begin:end], dtype=dt).reshape(info["shape"])
    out[name] = arr.astype(arr.dtype.newbyteorder("="))
  return out


def load_safetensors(path: PathLike, dtype: Any = None) -> Dict[str, np.ndarray]:
  """All tensors of a safetensors file as NumPy arrays, floating ones cast to ``dtype``.

  bfloat16 (``BF16``) and float16 tensors -- the usual storage of Hugging Face checkpoints -- come
  back as ``ml_dtypes.bfloat16`` / ``np.float16`` arrays, or in ``dtype`` if given (e.g.
  ``"float32"``: exact; ``"bfloat16"``: round to nearest even). Integer tensors are left alone.
  """
  st = _safetensors_numpy()
  try:
    tensors = st.load_file(os.fspath(path))
  except (KeyError, TypeError, ValueError):  # e.g. BF16 unsupported by an old safetensors
    tensors = _read_safetensors_raw(path)
  if dtype is None:
    return dict(tensors)
  target = jnp.dtype(dtype)
  return {k: (np.asarray(v).astype(target) if jnp.issubdtype(v.dtype, jnp.floating) else
              np.asarray(v)) for k, v in tensors.items()}


def _save_safetensors(tensors: Mapping[str, np.ndarray], path: PathLike) -> None:
  st = _safetensors_numpy()
  # "format": "pt" -- the layout is PyTorch's ([out, in] Linear weights); transformers checks it.
  st.save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, os.fspath(path),
               metadata={"format": "pt"})


def convert_safetensors(src: PathLike, dst: PathLike, dtype: Any = "float32") -> None:
  """Rewrites a safetensors file with its floating tensors cast to ``dtype`` (e.g. bf16 -> f32)."""
  _save_safetensors(load_safetensors(src, dtype), dst)


# --------------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------------


def _name_map(cfg: DecoderConfig):
  """Yields ``(hf_name, flax_path, transpose)`` for every decoder parameter."""
  yield "model.embed_tokens.weight", ("embed", "embedding"), False
  for i in range(cfg.num_layers):
    hf, fx = f"model.layers.{i}", f"layer_{i}"
    yield f"{hf}.input_layernorm.weight", (fx, "input_norm", "scale"), False
    for proj in ("q_proj", "k_proj", "v_proj"):
      yield f"{hf}.self_attn.{proj}.weight", (fx, "attn", proj, "kernel"), True
      yield f"{hf}.self_attn.{proj}.bias", (fx, "attn", proj, "bias"), False
    yield f"{hf}.self_attn.o_proj.weight", (fx, "attn", "o_proj", "kernel"), True
    yield f"{hf}.post_attention_layernorm.weight", (fx, "post_attention_norm", "scale"), False
    for proj in ("gate_proj", "up_proj", "down_proj"):
      yield f"{hf}.mlp.{proj}.weight", (fx, "mlp", proj, "kernel"), True
  yield "model.norm.weight", ("final_norm", "scale"), False


def _hf_shapes(cfg: DecoderConfig) -> Dict[str, Tuple[int, ...]]:
  e, m, v, d = cfg.hidden_dim, cfg.mlp_dim, cfg.vocab_size, cfg.head_dim
  q, kv = cfg.num_heads * d, cfg.num_kv_heads * d
  shapes = {"model.embed_tokens.weight": (v, e), "model.norm.weight": (e,)}
  for i in range(cfg.num_layers):
    p = f"model.layers.{i}"
    shapes.update({
        f"{p}.input_layernorm.weight": (e,), f"{p}.post_attention_layernorm.weight": (e,),
        f"{p}.self_attn.q_proj.weight": (q, e), f"{p}.self_attn.q_proj.bias": (q,),
        f"{p}.self_attn.k_proj.weight": (kv, e), f"{p}.self_attn.k_proj.bias": (kv,),
        f"{p}.self_attn.v_proj.weight": (kv, e), f"{p}.self_attn.v_proj.bias": (kv,),
        f"{p}.self_attn.o_proj.weight": (e, q),
        f"{p}.mlp.gate_proj.weight": (m, e), f"{p}.mlp.up_proj.weight": (m, e),
        f"{p}.mlp.down_proj.weight": (e, m),
    })
  return shapes


def params_from_hf_tensors(tensors: Mapping[str, Any], cfg: DecoderConfig) -> Dict[str, Any]:
  """Flax parameters ``{'params': ...}`` for ``Decoder(cfg)`` from Hugging Face Qwen2 tensors.

  Every expected tensor must be present with its shape; ``lm_head.weight`` may be present only as
  an exact copy of ``model.embed_tokens.weight`` (tied). Tensors are cast to ``cfg.param_dtype``.

  Raises:
    ValueError: naming the missing, unexpected or mis-shaped tensor.
  """
  cfg.validate()
  shapes = _hf_shapes(cfg)
  names = set(tensors)
  missing = sorted(set(shapes) - names)
  if missing:
    raise ValueError(f"missing tensors: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
  extra = sorted(names - set(shapes) - {"lm_head.weight"})
  if extra:
    raise ValueError(f"unexpected tensors (not in a {cfg.num_layers}-layer Qwen2 decoder): "
                     f"{extra[:5]}{' ...' if len(extra) > 5 else ''}")
  for name, shape in shapes.items():
    if tuple(np.shape(tensors[name])) != shape:
      raise ValueError(f"tensor {name!r} has shape {tuple(np.shape(tensors[name]))}, expected "
                       f"{shape}")
  if "lm_head.weight" in names and not np.array_equal(
      np.asarray(tensors["lm_head.weight"]), np.asarray(tensors["model.embed_tokens.weight"])):
    raise ValueError("tensor 'lm_head.weight' differs from 'model.embed_tokens.weight': the "
                     "decoder's output head is tied to the embedding")
  pdt = jnp.dtype(cfg.param_dtype)
  params: Dict[str, Any] = {}
  for name, path, transpose in _name_map(cfg):
    x = np.asarray(tensors[name])
    x = (x.T if transpose else x).astype(pdt)
    node = params
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = jnp.asarray(x)
  return {"params": params}


def hf_tensors_from_params(params: Mapping[str, Any], cfg: DecoderConfig,
                           dtype: Any = None) -> Dict[str, np.ndarray]:
  """Hugging Face Qwen2 tensors (NumPy, in ``dtype`` or the parameters' dtype) from Flax params.

  ``params`` is ``{'params': ...}`` or the inner dict. ``lm_head.weight`` is not written (tied, as
  ``save_pretrained`` does for ``tie_word_embeddings``).
  """
  tree = params["params"] if "params" in params else params
  out = {}
  for name, path, transpose in _name_map(cfg):
    node = tree
    for key in path:
      node = node[key]
    x = np.asarray(node)
    if dtype is not None:
      x = x.astype(jnp.dtype(dtype))
    out[name] = np.ascontiguousarray(x.T if transpose else x)
  shapes = _hf_shapes(cfg)
  for name, x in out.items():
    if x.shape != shapes[name]:
      raise ValueError(f"parameter for {name!r} has shape {x.shape}, expected {shapes[name]}")
  return out


# --------------------------------------------------------------------------------------------
# directories
# --------------------------------------------------------------------------------------------


def load_hf(path: PathLike, cfg: Optional[DecoderConfig] = None,
            **overrides: Any) -> Tuple[DecoderConfig, Dict[str, Any]]:
  """Imports a Hugging Face Qwen2 checkpoint directory (``config.json`` + ``model.safetensors``).

  Args:
    path: the directory (e.g. the authors' ``maze/ckpt-1500``).
    cfg: optional :class:`DecoderConfig`; checked against ``config.json`` (ValueError naming the
      disagreeing field). Without it the config is built from the file (float32 parameters and
      compute unless ``overrides`` say otherwise, e.g. ``param_dtype="bfloat16"``).
    **overrides: see :func:`decoder_config_from_hf`.

  Returns:
    ``(cfg, params)`` with ``params = {'params': ...}`` for ``Decoder(cfg).apply``, in
    ``cfg.param_dtype`` (bf16/fp16 files are converted).
  """
  cfg = decoder_config_from_hf(path, cfg, **overrides)
  tensors = load_safetensors(os.path.join(os.fspath(path), WEIGHTS_FILE))
  return cfg, params_from_hf_tensors(tensors, cfg)


def save_hf(path: PathLike, cfg: DecoderConfig, params: Mapping[str, Any], *, dtype: Any = None,
            **token_ids: Optional[int]) -> None:
  """Exports the decoder as a Hugging Face Qwen2 directory: ``config.json`` + ``model.safetensors``.

  Args:
    path: directory (created if needed; the two files are overwritten).
    cfg: the decoder's config.
    params: ``{'params': ...}`` (or the inner dict) of ``Decoder(cfg)``.
    dtype: storage dtype (``"float32"``, ``"bfloat16"``, ``"float16"``); default the parameters'.
    **token_ids: ``bos_token_id``, ``eos_token_id``, ``pad_token_id`` for ``config.json``
      (defaults: the maze vocabulary's 1, 2, 0).

  The directory loads with ``transformers.Qwen2ForCausalLM.from_pretrained`` (add the tokenizer
  files to use it for generation there).
  """
  tensors = hf_tensors_from_params(params, cfg, dtype)
  stored = np.dtype(next(iter(tensors.values())).dtype).name
  hf = hf_config_from_decoder(cfg, torch_dtype=stored, **token_ids)
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(os.fspath(path), CONFIG_FILE), "w", encoding="utf-8") as f:
    json.dump(hf, f, indent=2, sort_keys=True)
    f.write("\n")
  _save_safetensors(tensors, os.path.join(os.fspath(path), WEIGHTS_FILE))
