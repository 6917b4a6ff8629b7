"""Saving and loading bundles and training checkpoints with Orbax.

One module per concept; this package re-exports their public names, so
``checkpointing.load_bundle`` and ``mnemonic_jax.save_bundle`` are all a user needs:

* :mod:`~mnemonic_jax.checkpointing.bundle_format`: the bundle's on-disk layout and its
  metadata (:func:`parse_bundle_meta`, the one reader).
* :mod:`~mnemonic_jax.checkpointing.integrity`: the SHA-256 checksums of the array files
  and of the metadata itself (what they protect against: accidental damage; what they do
  not: deliberate tampering), verified through one open directory.
* :mod:`~mnemonic_jax.checkpointing.bundles`: :func:`save_bundle`, :func:`load_bundle`,
  :func:`resolve_bundle_path` (a ``train`` workdir names its bundle).
* :mod:`~mnemonic_jax.checkpointing.outputs`: :func:`check_output` before any work (no
  output inside a bundle, :func:`enclosing_bundle`, or inside a train workdir's
  checkpoints, :func:`enclosing_train_checkpoints`), the hidden staging directory, the
  atomic install, :func:`remove_stale_staging`.
* :mod:`~mnemonic_jax.checkpointing.imports`: parameters trained elsewhere (Orbax PyTree
  directories, flax msgpack files): :func:`import_params`, :func:`read_pretrained`.
* :mod:`~mnemonic_jax.checkpointing.train_checkpoints`: :class:`TrainCheckpointer` over
  ``ocp.CheckpointManager`` (resume), :func:`workdir_lock`, :func:`remove_orbax_temporaries`;
  :mod:`~mnemonic_jax.checkpointing.train_records`: each step's sealed record (checksums of
  its files, verified on resume), :func:`read_step_metadata`.
* :mod:`~mnemonic_jax.checkpointing.checks`, :mod:`~mnemonic_jax.checkpointing.trees`,
  :mod:`~mnemonic_jax.checkpointing.model_spec`: the bounds on declared sizes, the
  normalisation and finiteness checks, stored-tree comparison and a model's abstract
  variables, shared by the readers and writers above.

Every user error (missing path, not a bundle, corrupt or foreign checkpoint, existing
output without ``force``, arrays that do not fit the model) raises
:class:`CheckpointError` with one line naming the path and the fix, and writes nothing;
an empty path raises :class:`~mnemonic_jax.errors.BadRequest`. Every file read is checked
to be a regular file after opening and read within a size cap (:mod:`mnemonic_jax._files`).
Nothing here changes logging or stderr: the command line decides what Orbax may print.
"""

from mnemonic_jax.checkpointing._common import (
    CheckpointError, CodesNotLearnedWarning, OldBundleLeftWarning, UnverifiedBundleWarning)
from mnemonic_jax.checkpointing.bundle_format import (
    BUNDLE_FORMAT, BUNDLE_VERSION, MAX_META_BYTES, OLDER_BUNDLE_VERSIONS, parse_bundle_meta)
from mnemonic_jax.checkpointing.integrity import array_checksums, meta_checksum
from mnemonic_jax.checkpointing.bundles import load_bundle, resolve_bundle_path, save_bundle
from mnemonic_jax.checkpointing.checks import (
    MAX_CODE_ELEMENTS, MAX_INPUT_DIM, MAX_INPUT_RANK, PARAMS_FILE_FACTOR, check_input_shape,
    check_normalisation, check_normalisation_range)
from mnemonic_jax.checkpointing.imports import import_params, read_pretrained
from mnemonic_jax.checkpointing.model_spec import abstract_variables
from mnemonic_jax.checkpointing.outputs import (
    check_output, enclosing_bundle, enclosing_train_checkpoints, remove_stale_staging)
from mnemonic_jax.checkpointing.train_checkpoints import (
    LOCK_FILE, TrainCheckpoint, TrainCheckpointer, remove_orbax_temporaries, workdir_lock)
from mnemonic_jax.checkpointing.train_records import (
    TRAIN_FORMAT, TRAIN_VERSION, UnverifiedCheckpointWarning, read_step_metadata)
from mnemonic_jax.checkpointing.trees import nonfinite_leaves

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "CheckpointError",
    "CodesNotLearnedWarning",
    "OldBundleLeftWarning",
    "LOCK_FILE",
    "MAX_CODE_ELEMENTS",
    "MAX_INPUT_DIM",
    "MAX_INPUT_RANK",
    "MAX_META_BYTES",
    "OLDER_BUNDLE_VERSIONS",
    "PARAMS_FILE_FACTOR",
    "TRAIN_FORMAT",
    "TRAIN_VERSION",
    "TrainCheckpoint",
    "TrainCheckpointer",
    "UnverifiedBundleWarning",
    "UnverifiedCheckpointWarning",
    "abstract_variables",
    "array_checksums",
    "check_input_shape",
    "check_normalisation",
    "check_normalisation_range",
    "check_output",
    "enclosing_bundle",
    "enclosing_train_checkpoints",
    "import_params",
    "load_bundle",
    "meta_checksum",
    "nonfinite_leaves",
    "parse_bundle_meta",
    "read_pretrained",
    "read_step_metadata",
    "remove_orbax_temporaries",
    "remove_stale_staging",
    "resolve_bundle_path",
    "save_bundle",
    "workdir_lock",
]
