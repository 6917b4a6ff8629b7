"""Parameters trained elsewhere: an Orbax PyTree directory or a flax msgpack file.

:func:`import_params` turns such a file (plus codes and the normalisation the model was
trained with) into a bundle; :func:`read_pretrained` reads the weights a config's
``pretrained`` field names. Every size a file declares is bounded by the model's own
(:data:`~mnemonic_jax.checkpointing.checks.PARAMS_FILE_FACTOR`) before it is read, and
every file is checked to be a regular file (never a FIFO, a device or a link to one) of at
most that size before it is read (:mod:`mnemonic_jax._files`).
"""

from __future__ import annotations

import io
import math
import os
import pathlib
import unicodedata
import warnings
from typing import Any, Mapping, Sequence

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from mnemonic_jax import environment, errors
from mnemonic_jax import _files
from mnemonic_jax.bundle import IMPORT_EVENT, Bundle
from mnemonic_jax.checkpointing._common import (
    CheckpointError, CodesNotLearnedWarning, PathLike, PyTree, _abs, _abs_output, _one_line)
from mnemonic_jax.checkpointing.bundle_format import (
    _check_arrays, _check_dtypes, _marked_bundle_meta)
from mnemonic_jax.checkpointing.bundles import load_bundle, save_bundle
from mnemonic_jax.checkpointing.checks import (
    MAX_PARAMS_FILE_BYTES, PARAMS_FILE_FACTOR, _check_finite, _is_int, check_input_shape,
    check_normalisation, check_normalisation_range)
from mnemonic_jax.checkpointing.model_spec import _spec_str, abstract_variables
from mnemonic_jax.data.sources import MAX_CLASSES


def _params_file_limit(abstract: PyTree) -> int:
  """The most elements a params file for a model of ``abstract`` variables may hold."""
  elements = sum(math.prod(x.shape) for x in jax.tree.leaves(abstract))
  return PARAMS_FILE_FACTOR * elements + (1 << 20)


#: The most bytes an element of a params file may take on disk (float64, plus slack).
_BYTES_PER_ELEMENT = 8


def _read_params_file(path: pathlib.Path, max_elements: int | None = None) -> PyTree:
  """Reads a params tree from an Orbax PyTree directory or a flax msgpack file.

  Every file is checked first to be a regular file, and their size is capped: at
  ``8 * max_elements`` bytes in all (or :data:`MAX_PARAMS_FILE_BYTES`).

  Args:
    path: the directory or file.
    max_elements: the most array elements an Orbax directory's metadata may declare in
      all, checked before anything is restored (a msgpack file cannot declare more than it
      holds); None for no bound but :data:`MAX_PARAMS_FILE_BYTES`.

  Raises:
    CheckpointError: missing, unreadable, not a regular file (or a directory holding
      one), larger than the cap, or declaring more than ``max_elements``.
  """
  if not path.exists():  # Or a symbolic link loop, a folder that may not be searched.
    raise CheckpointError(_files.missing_line(path, "pass an Orbax checkpoint directory or "
                                              "a flax msgpack file of parameters"))
  max_bytes = (MAX_PARAMS_FILE_BYTES if max_elements is None
               else _BYTES_PER_ELEMENT * max_elements + (16 << 20))
  fix = (f"pass an Orbax checkpoint directory or a flax msgpack file of parameters for this "
         f"model (at most {PARAMS_FILE_FACTOR}x its size)")
  if path.is_dir():
    _files.check_tree(path, max_bytes=max_bytes, max_files=100_000, error=CheckpointError,
                      fix=fix)
    if max_elements is not None:
      try:
        stored = ocp.Checkpointer(ocp.PyTreeCheckpointHandler()).metadata(path).item_metadata
        stored = getattr(stored, "tree", stored)
        declared = sum(math.prod(int(d) for d in leaf.shape)
                       for leaf in jax.tree.leaves(stored) if hasattr(leaf, "shape"))
      except Exception as e:  # pylint: disable=broad-except
        environment.reraise(e)  # The machine's failure is not the checkpoint's.
        raise CheckpointError(
            f"{path} is not a readable Orbax PyTree checkpoint ({_one_line(e)}); pass the "
            "directory given to StandardCheckpointer/PyTreeCheckpointer.save") from None
      if declared > max_elements:
        raise CheckpointError(
            f"{path} declares arrays of {declared} elements in all, more than the "
            f"{max_elements} a checkpoint of this model may hold ({PARAMS_FILE_FACTOR}x its "
            "variables); it is corrupt or of another model")
    try:
      with warnings.catch_warnings():  # Shardings come from the checkpoint's own file.
        warnings.filterwarnings("ignore", message="Sharding info not provided")
        tree = ocp.Checkpointer(ocp.PyTreeCheckpointHandler()).restore(path)
    except Exception as e:  # pylint: disable=broad-except
      environment.reraise(e)  # The machine's failure is not the checkpoint's.
      raise CheckpointError(
          f"{path} is not a readable Orbax PyTree checkpoint ({_one_line(e)}); pass the "
          "directory given to StandardCheckpointer/PyTreeCheckpointer.save (for a "
          "CheckpointManager: <dir>/<step>/<item>)") from None
    # Host arrays, as the msgpack branch gives: Orbax's are committed to a device, and a
    # program jitted for uncommitted arrays (fresh ones) would compile again for them.
    return jax.tree.map(
        lambda x: np.asarray(x) if isinstance(x, jax.Array) and x.dtype != object
        and not jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x, tree)
  data = _files.read_regular(path, max_bytes=max_bytes, error=CheckpointError, fix=fix,
                             what="a params file for this model")
  try:
    return flax.serialization.msgpack_restore(data)
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(
        f"{path} is not a flax msgpack file ({_one_line(e)}); write it with "
        "flax.serialization.to_bytes(params) or pass an Orbax checkpoint directory") from None


def read_pretrained(path: PathLike, like: PyTree = None) -> tuple[PyTree, PyTree]:
  """``(params, batch_stats)`` from a bundle, or from a params file as :func:`import_params`
  reads it (a bare params tree, or a dict with ``params`` and optional ``batch_stats``).

  Args:
    path: the bundle, Orbax directory or msgpack file.
    like: the variables (or their abstract shapes) of the model they are for; an Orbax
      directory declaring more than :data:`PARAMS_FILE_FACTOR` times their elements is
      refused before it is read. None for no bound.

  Raises:
    CheckpointError: the path is missing, holds neither, or declares too much.
  """
  path = _abs(path)
  if _marked_bundle_meta(path) is not None:
    bundle = load_bundle(path)
    return bundle.params, bundle.batch_stats
  tree = _read_params_file(path, None if like is None else _params_file_limit(like))
  if isinstance(tree, dict) and "params" in tree:
    return tree["params"], tree.get("batch_stats") or {}
  return tree, {}


def _read_codes(codes: Any, expected_shape: tuple[int, ...]) -> np.ndarray:
  """Codes given as an array, or read from a ``.npy`` file whose header is checked first.

  The file is opened once, checked to be a regular file of at most the size such codes
  can take (float64 and a large header), its header's shape must be ``expected_shape``
  and it must hold exactly the bytes it declares before anything is allocated (a hostile
  header cannot make numpy allocate).

  Raises:
    CheckpointError: the file is missing or unreadable, is not a regular file (a FIFO, a
      device), is not a plain ``.npy`` array of ``expected_shape``, or is truncated or
      longer than its header declares.
  """
  if not isinstance(codes, (str, os.PathLike)):
    return np.asarray(codes)
  codes_path = _abs(codes)
  fix = "pass a .npy file written by numpy.save"
  max_bytes = math.prod(expected_shape) * 16 + (1 << 20)
  try:
    with _files.open_regular(codes_path, max_bytes=max_bytes, error=CheckpointError, fix=fix,
                             what="a codes file of this shape") as f:
      version = np.lib.format.read_magic(f)
      if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
      elif version == (2, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
      else:
        raise ValueError(f"unsupported .npy format version {version}")
      data_bytes = os.fstat(f.fileno()).st_size - f.tell()
      if dtype.hasobject:
        raise ValueError("it holds Python objects")
      if tuple(shape) != tuple(expected_shape):
        raise CheckpointError(
            f"{codes_path}: codes have shape {tuple(shape)}, expected "
            f"{tuple(expected_shape)} (num_classes, *input_shape)")
      needed = math.prod(shape) * dtype.itemsize
      if data_bytes != needed:
        raise CheckpointError(
            f"{codes_path}: holds {data_bytes} bytes of data but its header {tuple(shape)} "
            f"{dtype} needs {needed} (truncated or corrupt); {fix}")
      del fortran_order  # read_array below honours it.
      f.seek(0)
      data = f.read(max_bytes + 1)
    return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
  except (OSError, ValueError, EOFError) as e:
    if isinstance(e, CheckpointError):
      raise
    raise CheckpointError(f"{codes_path}: cannot read codes ({_one_line(e)}); {fix}") from None


#: Codes scored per forward pass when an import counts the codes the model knows.
_CODES_CHUNK = 64


@jax.jit
def _logits(apply_fn, params, x):
  return apply_fn(params, x)


def codes_right(bundle: Bundle) -> int:
  """How many of a bundle's codes its model classifies as their class.

  Args:
    bundle: the bundle (codes ``(num_classes, *input_shape)``, scored in float32 in chunks
      of at most 64, the last one zero-padded).

  Returns:
    The number of classes ``c`` whose code ``codes[c]`` the model's arg-max gives ``c``.
  """
  codes = np.asarray(bundle.codes, np.float32)
  apply_fn, chunk = bundle.apply_fn(), min(len(codes), _CODES_CHUNK)
  right = 0
  for start in range(0, len(codes), chunk):
    part = codes[start:start + chunk]
    padded = np.concatenate([part, np.zeros((chunk - len(part), *part.shape[1:]), part.dtype)])
    predicted = np.argmax(np.asarray(_logits(apply_fn, bundle.params, padded)), -1)
    right += int(np.sum(predicted[:len(part)] == np.arange(start, start + len(part))))
  return right


def import_warnings(right: int, num_classes: int) -> list[str]:
  """Why an imported bundle's codes may not serve to forget (empty if the model knows them).

  Args:
    right: codes the model classifies as their class (:func:`codes_right`).
    num_classes: the number of classes (and codes).

  Returns:
    One sentence: most codes misclassified (the model does not know them: attach codes),
    or a few (forgetting those classes may not work); none when every code is right.
  """
  if right == num_classes:
    return []
  attach = ("attach codes with 'mnemonic-jax attach-codes' (mnemonic_jax.attach.attach_codes)"
            " before forgetting")
  if 2 * right < num_classes:
    return [f"the model classifies only {right} of {num_classes} codes as their class: it "
            "does not know these codes (they are not the ones it was trained with, or it was "
            f"trained without codes), so forgetting with them does not aim at a class; {attach}"]
  return [f"{num_classes - right} of {num_classes} codes are not classified as their class; "
          f"forgetting from them may not work; check that these are the codes the model was "
          f"trained with, or {attach}"]


def import_params(
    params_path: PathLike,
    codes: Any,
    *,
    model_name: str,
    num_classes: int,
    input_shape: Sequence[int],
    output: PathLike,
    model_kwargs: Mapping[str, Any] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    class_names: Sequence[str] = (),
    dataset: str = "",
    config: Mapping[str, Any] | None = None,
    force: bool = False,
) -> pathlib.Path:
  """Writes a bundle from parameters trained with the user's own loop.

  Args:
    params_path: either an Orbax PyTree checkpoint directory (written by
      ``StandardCheckpointer``/``PyTreeCheckpointer``/``StandardSave``) or a flax msgpack
      file (``flax.serialization.to_bytes``). It holds either the params tree itself or a
      variables dict ``{"params": ..., "batch_stats": ...}`` (required for BatchNorm models;
      other top-level entries such as an optimizer state are ignored).
    codes: mnemonic codes of shape ``(num_classes, *input_shape)``, an array or a ``.npy``
      path.
    model_name: registry name of the model the params belong to.
    num_classes: number of classes.
    input_shape: shape of one input, e.g. ``(28, 28, 1)``.
    output: the bundle directory to write.
    model_kwargs: the model's other attributes.
    mean: the per-channel mean the model's training subtracted from images scaled to
      [0, 1]. Required: only the user knows it (``(0.0,)`` with ``std=(1.0,)`` for
      images only scaled).
    std: the per-channel standard deviation the centred images were divided by.
    class_names: one name per class (a sequence of str), or none (empty, or None). Names
      differing in case only ('A', 'a') are distinct.
    dataset: name of the training dataset.
    config: training configuration to record (JSON-able).
    force: replace an existing bundle at ``output``.

  Returns:
    The absolute path of the bundle written. Its history holds one entry (``event``
    :data:`~mnemonic_jax.bundle.IMPORT_EVENT`, ``classes`` empty, forgetting nothing)
    saying how many codes the model classifies as their class (``codes_right`` of
    ``num_classes``, ``codes_accuracy`` their fraction) and why they may not serve to
    forget (``warnings``, :func:`import_warnings`); read it with
    ``load_bundle(path).history[-1]``.

  Warns:
    CodesNotLearnedWarning: some codes are not classified as their class (most of them:
      the model does not know these codes; attach codes with ``mnemonic-jax
      attach-codes``). The bundle is written all the same.

  Raises:
    CheckpointError: ``num_classes`` is not in ``[1, MAX_CLASSES]``, the input shape is
      not supported (see :func:`check_input_shape`), the mean or std is not given or
      has neither one value nor one per channel, the mean is outside [0, 1] or the std
      above 0.5 and not 1 (:func:`check_normalisation_range`), the params file is missing or
      unreadable (or an Orbax directory declares far more elements than the model has, see
      :data:`PARAMS_FILE_FACTOR`), its tree does not match the model's parameters
      (structure or shapes) or holds integers, booleans or complex numbers where the
      model has floats (another float dtype is cast to the model's), the codes file's
      header does not declare the expected shape
      or does not match its size, the codes have the wrong shape, the
      params, batch_stats or codes hold NaN or inf (also after casting to the model's
      dtypes), the mean or std is not finite or the std not > 0, or the output exists
      without ``force``, or ``class_names`` are given but not one non-empty, distinct name
      per class (no space around it, no control, format or line-breaking character, not
      starting with a combining mark, at most :data:`MAX_CLASS_NAME_CHARS` characters, no
      two alike once composed: see :func:`_check_class_names`). Nothing is written then.
    BadRequestType: ``class_names`` is a ``str`` or not a sequence, or a name not a
      ``str``. Nothing is written then.
  """
  params_path = _abs(params_path)
  _abs_output(output, "output")  # An empty output is refused before anything is read.
  model_kwargs = dict(model_kwargs or {})
  if not _is_int(num_classes) or not 1 <= num_classes <= MAX_CLASSES:
    raise CheckpointError(f"num_classes {num_classes!r} must be an integer in [1, "
                          f"{MAX_CLASSES}]")
  check_input_shape(tuple(input_shape), num_classes)
  _check_class_names(class_names, num_classes)
  spec = _spec_str(model_name, model_kwargs, input_shape)
  fix = ("pass the per-channel mean and std the model was trained with (e.g. --mean 0.1307 "
         "--std 0.3081)")
  if mean is None or std is None:
    raise CheckpointError(
        "the normalisation the model was trained with is unknown: pass its per-channel "
        "mean and std (e.g. mean=(0.1307,), std=(0.3081,) for MNIST; (0.0,) and (1.0,) for "
        "images only scaled to [0, 1]); CLI: --mean and --std, or --dataset NAME for that "
        "dataset's training statistics")
  _check_finite("", fix, mean=mean, std=std)
  check_normalisation(mean, std, input_shape[-1], fix=fix)
  check_normalisation_range(mean, std)
  abstract = abstract_variables(model_name, num_classes, input_shape, model_kwargs)
  tree = _read_params_file(params_path, _params_file_limit(abstract))
  if (isinstance(tree, Mapping) and "params" in tree
      and not (isinstance(abstract["params"], Mapping) and "params" in abstract["params"])):
    params, batch_stats = tree["params"], tree.get("batch_stats") or {}
  else:
    params, batch_stats = tree, {}
  if abstract["batch_stats"] and not batch_stats:
    raise CheckpointError(
        f"{params_path}: {spec} has BatchNorm statistics; save the variables dict "
        "{'params': ..., 'batch_stats': ...} instead of params alone")
  codes_where = str(_abs(codes)) if isinstance(codes, (str, os.PathLike)) else "codes"
  codes_shape = (int(num_classes), *(int(d) for d in input_shape))
  codes = _read_codes(codes, codes_shape)
  _check_arrays(str(params_path), spec, abstract, params, batch_stats, codes, codes_shape)
  # Integers for the model's floats were cast silently, the model then broken (10% right)
  # and the codes blamed; another float dtype is cast to the model's, as said below.
  _check_dtypes(str(params_path), spec, abstract, params, batch_stats,
                "import the floating-point values the model was trained with")
  if not jnp.issubdtype(codes.dtype, jnp.floating):
    raise CheckpointError(f"codes have dtype {codes.dtype}; mnemonic codes live in the "
                          "normalised input space and must be floating point")

  def cast(tree_, abstract_):  # To the model's dtypes, the ones it computes in.
    with np.errstate(over="ignore", invalid="ignore"):  # Overflow is refused just below.
      return jax.tree.map(lambda x, a: np.asarray(x, dtype=a.dtype), tree_, abstract_)

  params = cast(params, abstract["params"])
  batch_stats = cast(batch_stats, abstract["batch_stats"]) if abstract["batch_stats"] else {}
  fix = "import only parameters from a run that did not diverge"
  _check_finite(str(params_path), fix, params=params, batch_stats=batch_stats)
  _check_finite(codes_where, "pass the codes the model was trained with", codes=codes)

  bundle = Bundle(
      model_name=model_name,
      model_kwargs=model_kwargs,
      params=params,
      batch_stats=batch_stats,
      codes=codes,
      num_classes=int(num_classes),
      input_shape=tuple(int(d) for d in input_shape),
      mean=tuple(float(m) for m in mean),
      std=tuple(float(s) for s in std),
      class_names=() if class_names is None else tuple(str(c) for c in class_names),
      dataset=dataset,
      config=dict(config or {}),
  )
  right = codes_right(bundle)
  notes = import_warnings(right, int(num_classes))
  entry = {"event": IMPORT_EVENT, "classes": [], "params_from": str(params_path),
           "codes_from": codes_where, "codes_right": right, "num_classes": int(num_classes),
           "codes_accuracy": right / int(num_classes), "warnings": notes}
  written = save_bundle(output, bundle.replace(history=(entry,)), force=force)
  for note in notes:
    warnings.warn(note, CodesNotLearnedWarning, stacklevel=2)
  return written



#: The most characters a class name may have (reports print it in a table's cell).
MAX_CLASS_NAME_CHARS = 200
#: Unicode categories a class name may not hold: control characters (a newline breaks a
#: report's table), format characters (invisible: a zero-width space, a bidi override that
#: reorders the text printed), surrogates, and line and paragraph separators.
_REFUSED_CATEGORIES = {"Cc": "a control character (a newline, a tab, ...)",
                       "Cf": "an invisible format character", "Cs": "a lone surrogate",
                       "Zl": "a line separator", "Zp": "a paragraph separator"}


def _check_class_names(class_names: Sequence[str] | None, num_classes: int) -> None:
  """Refuses class names that are given (any; None or empty: none) but not one name per
  class that prints as itself and apart from the others: each a ``str`` that is not empty,
  of at most :data:`MAX_CLASS_NAME_CHARS` characters, with no space around it, holding no
  control, format (zero-width, bidi), surrogate or line-breaking character
  (:data:`_REFUSED_CATEGORIES`), not starting with a combining mark; and no two names alike
  once in Unicode's composed form (NFC) with each run of spaces one ``' '`` ('\\u00e9' and
  'e\\u0301', 'a\\u00a0b' and 'a b'). Names differing in case only ('A', 'a') stay apart:
  they print apart, and datasets name classes so (EMNIST's letters).

  Raises:
    BadRequestType: ``class_names`` is a ``str`` (it would be split into its characters) or
      not a sequence (a 0-d array too), or a name is not a ``str`` (None, a number); naming it.
    CheckpointError: naming the class, or the name given twice.
  """
  if class_names is None:
    return
  if isinstance(class_names, (str, bytes)) or not isinstance(class_names, (
      Sequence, np.ndarray)) or getattr(class_names, "ndim", 1) == 0:  # A 0-d array: one str.
    raise errors.BadRequestType(
        f"class_names must be a sequence of str, one name per class (e.g. ['cat', 'dog']); "
        f"got {type(class_names).__name__} {class_names!r:.40}")
  names = list(class_names)
  if not names:
    return
  if len(names) != num_classes:
    raise CheckpointError(f"{len(names)} class names for {num_classes} classes; give one "
                          "name per class")
  for i, name in enumerate(names):
    if not isinstance(name, str):
      raise errors.BadRequestType(f"the name of class {i} is {name!r:.40} of type "
                                  f"{type(name).__name__}, not a str; give every class a name")
  blank = [i for i, n in enumerate(names) if not n.strip()]
  if blank:
    raise CheckpointError(f"the name of class {blank[0]} is empty (a trailing or doubled "
                          "comma?); give every class a name")
  for i, name in enumerate(names):
    _check_class_name(i, name)
  twice = sorted({n for n in names if names.count(n) > 1})
  if twice:
    raise CheckpointError(f"the class name {twice[0]!r} is given {names.count(twice[0])} "
                          "times; give each class a name of its own")
  seen: dict[str, int] = {}
  for i, name in enumerate(names):
    key = " ".join(unicodedata.normalize("NFC", name).split())
    if key in seen:
      raise CheckpointError(
          f"the names of classes {seen[key]} and {i}, {ascii(names[seen[key]])} and "
          f"{ascii(name)}, "
          "print alike (the same text in other Unicode forms or spaces); give each class a "
          "name of its own")
    seen[key] = i


def _check_class_name(i: int, name: str) -> None:
  """Refuses a non-empty class name that does not print as itself (see
  :func:`_check_class_names`).

  Raises:
    CheckpointError: naming the class and the name (cut short when too long).
  """
  if len(name) > MAX_CLASS_NAME_CHARS:
    raise CheckpointError(f"the name of class {i}, {name!r:.40}..., has {len(name)} "
                          f"characters, more than {MAX_CLASS_NAME_CHARS}; give a shorter one")
  if name != name.strip():
    raise CheckpointError(f"the name of class {i}, {name!r}, has space around it (it "
                          f"prints as {name.strip()!r}); give it without")
  for c in name:
    what = _REFUSED_CATEGORIES.get(unicodedata.category(c))
    if what is not None:
      raise CheckpointError(f"the name of class {i}, {name!r}, holds {what} (U+{ord(c):04X}): "
                            "reports print it; give it without")
  if unicodedata.category(name[0]).startswith("M"):
    raise CheckpointError(f"the name of class {i}, {ascii(name)}, starts with a combining mark "
                          f"(U+{ord(name[0]):04X}), which prints on what comes before it; "
                          "give it without")
