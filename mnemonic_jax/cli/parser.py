"""The ``mnemonic-jax`` command line's arguments: their types, defaults and the parser.

Building the parser imports no JAX, so ``mnemonic-jax --help`` and ``--version`` answer
at once. The commands themselves are in :mod:`mnemonic_jax.cli.commands` (``args.command``
names one); what a command line argument means is documented in its ``--help``. Also here,
at the bottom of the package: the exit statuses, the one-line error report and
:class:`UsageError`, the user errors the command line finds itself.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import importlib.metadata
import os
import pathlib
import re
import signal
import sys
import textwrap
from collections.abc import Sequence

from mnemonic_jax import distributed, errors
from mnemonic_jax.cli.compilation_cache import CACHE_ENV, default_cache_hint
from mnemonic_jax.cli.values import (  # noqa: F401  # Re-exported: the parser's types.
    DEPTH_GROUPS,
    class_id,
    class_list,
    class_names_value,
    config_spec,
    depth_attacks,
    file_value,
    float_tuple,
    int_tuple,
    json_object,
    lambda_value,
    mix_rate,
    model_name,
    name_value,
    output_value,
    path_value,
    positive_float,
    positive_int,
    seed_value,
    split_name,
)

PROG = "mnemonic-jax"
#: Exit status of a user error (one line on stderr), of a Ctrl-C, and of a `train` that a
#: SIGTERM stopped after saving.
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM
DEFAULT_LAMBDA1 = 1e-3
DEFAULT_LAMBDA2 = 10.0
DEMO_EPOCHS = 60
DEFAULT_ATTACH_EPOCHS = 2
DEMO_FILES = ("trained", "forgotten", "per_class_accuracy.png")


class RegisteredMoves:
  """``--move``'s choices: the names of :data:`mnemonic_jax.forgetting.MOVES`, read from
  the registry when first needed (a ``--move`` given, or its error), so that parsing
  and ``--help`` import no JAX."""

  def _names(self) -> list[str]:
    from mnemonic_jax.forgetting import MOVES  # pylint: disable=import-outside-toplevel
    return sorted(MOVES)

  def __contains__(self, name: object) -> bool:
    return name in self._names()

  def __iter__(self):
    return iter(self._names())


MOVES = RegisteredMoves()
_OVERRIDE_PREFIX = "--config."  # configs.OVERRIDE_PREFIX, without importing ml_collections.


class UsageError(errors.BadRequest):
  """A user error detected by the command line itself (reported as one line, exit 2)."""


class _Formatter(argparse.HelpFormatter):
  """Wraps one-line paragraphs (descriptions); keeps multi-line ones (examples) as written."""

  def _fill_text(self, text: str, width: int, indent: str) -> str:
    paragraphs = text.split("\n\n")
    return "\n\n".join(
        p if "\n" in p else textwrap.fill(p, width, initial_indent=indent,
                                         subsequent_indent=indent)
        for p in paragraphs)

  def _expand_help(self, action: argparse.Action) -> str:
    """As argparse's, but the choices are read only if the help names ``%(choices)s``
    (argparse reads them for every help; ``--move``'s come from the move registry,
    which imports JAX)."""
    if action.choices is not None and "%(choices)" not in (action.help or ""):
      action = copy.copy(action)
      action.choices = None
    return super()._expand_help(action)


class _Parser(argparse.ArgumentParser):
  """An ArgumentParser whose errors are one line on stderr and exit status 2, and that
  refuses an option taking a value given twice (argparse keeps the last one: ``--classes 3
  --classes 5`` forgot class 5 alone, without a word)."""

  def error(self, message: str):  # pylint: disable=missing-function-docstring
    # An option it does not know (an abbreviation such as --check: none is taken) is named
    # first: "required: --checkpoint" alone read as if the option typed were missing.
    unknown = [a for a in getattr(self, "_given", ()) if _unknown_option(self, a)]
    if unknown and not message.startswith("unrecognized arguments"):
      message = f"{unrecognized(self, unknown)}; {message}"
    print_error(f"{message} (see '{self.prog} --help')")
    sys.exit(EXIT_USAGE)

  def _print_message(self, message: str, file=None) -> None:
    # argparse drops a failed write of --help or --version without a word, then exits 0.
    file = sys.stderr if file is None else file
    try:
      if message:
        file.write(message)
        file.flush()
    except (AttributeError, OSError) as e:  # A closed or full stream.
      if file is sys.stderr:
        return
      if isinstance(e, BrokenPipeError):  # The reader went away: no line, as other tools.
        os.dup2(os.open(os.devnull, os.O_WRONLY), file.fileno())
        sys.exit(128 + signal.SIGPIPE)
      why = getattr(e, "strerror", None) or "stdout is closed"
      print_error(f"cannot write the help to stdout: {why}")
      sys.exit(EXIT_USAGE)

  def parse_args(self, args=None, namespace=None):  # pylint: disable=missing-function-docstring
    # As argparse's, but an argument no parser knows, given after the subcommand, points
    # to that subcommand's --help (argparse reports it from the top-level parser).
    parsed, unknown = self.parse_known_args(args, namespace)
    if unknown:
      argv = list(sys.argv[1:] if args is None else args)
      command = getattr(parsed, "command", None)
      after = command in argv and unknown[0] in argv[argv.index(command) + 1:]
      prog = f"{self.prog} {command}" if after else self.prog
      sub = _subparser(self, command) if after else self
      print_error(f"{unrecognized(sub, unknown)} (see '{prog} --help')")
      sys.exit(EXIT_USAGE)
    return parsed

  def parse_known_args(self, args=None, namespace=None):  # pylint: disable=missing-function-docstring
    args = list(sys.argv[1:] if args is None else args)
    self._given = args  # pylint: disable=attribute-defined-outside-init  # For error().
    refuse_repeated_options(self, args)
    return super().parse_known_args(args, namespace)


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
  """The parser of ``command`` (``parser`` itself if it has none)."""
  for action in parser._actions:  # pylint: disable=protected-access
    if isinstance(action, argparse._SubParsersAction) and command in action.choices:  # pylint: disable=protected-access
      return action.choices[command]
  return parser


def _unknown_option(parser: argparse.ArgumentParser, arg: str) -> bool:
  """Whether ``arg`` is written as an option (``--x``, ``--x=v``) that ``parser`` lacks."""
  return (arg.startswith("--") and arg != "--"
          and arg.split("=", 1)[0] not in parser._option_string_actions)  # pylint: disable=protected-access


def unrecognized(parser: argparse.ArgumentParser, unknown: Sequence[str]) -> str:
  """``"unrecognized arguments: ..."``, with the options of ``parser`` an unknown option
  abbreviates or nearly spells (``--check``: did you mean --checkpoint?)."""
  options = [s for s in parser._option_string_actions if s.startswith("--")]  # pylint: disable=protected-access
  meant = []
  for arg in unknown:
    name = arg.split("=", 1)[0]
    if _unknown_option(parser, arg):
      near = [o for o in options if o.startswith(name)] or difflib.get_close_matches(
          name, options, n=1)
      meant += [o for o in near if o not in meant]
  hint = f" (did you mean {' or '.join(meant)}? options are not abbreviated)" if meant else ""
  return f"unrecognized arguments: {' '.join(unknown)}{hint}"


def refuse_repeated_options(parser: argparse.ArgumentParser, args: Sequence[str]) -> None:
  """``parser.error`` if an option of ``parser`` that takes a value is given twice in
  ``args`` (argparse keeps the last one: ``--classes 3 --classes 5`` meant class 5 alone).
  The command line's parser and the experiment runners' (``experiments.common``) call it."""
  given: dict[argparse.Action, list[str]] = {}
  for token in args:
    if token == "--":
      break
    action = parser._option_string_actions.get(token.split("=", 1)[0])  # pylint: disable=protected-access
    if isinstance(action, argparse._StoreAction):  # pylint: disable=protected-access
      given.setdefault(action, []).append(token.split("=", 1)[0])
  for action, names in given.items():
    if len(names) > 1:
      several = " (several classes: --classes 3,5)" if action.type is class_list else ""
      parser.error(f"{' and '.join(dict.fromkeys(names))} given {len(names)} times; give it "
                   f"once{several}")


def print_error(message: object) -> None:
  """Prints ``mnemonic-jax: error: <message>`` on stderr, as one line.

  Args:
    message: the error (an exception or a text). The whole of it is shown on one line,
      its control characters and newlines escaped
      (:func:`mnemonic_jax.cli.report.printable`: a message may quote a path, or a
      bundle's or a dataset's text; a newline in a path must not cut the line and lose
      the reason after it). A stderr that cannot be written (closed, a full disk) is
      given up on without a word: nothing more can be said, and the exit status still
      tells what happened.
  """
  from mnemonic_jax.cli.report import printable  # pylint: disable=import-outside-toplevel

  text = str(message).strip() or "unknown error"
  stream = sys.stderr
  if stream is None:  # The program started with its stderr closed (2>&-).
    return
  try:
    stream.write(f"{PROG}: error: {printable(text)}\n")
    stream.flush()
  except (OSError, ValueError):  # ValueError: a closed stream.
    pass


def show_progress(args: argparse.Namespace) -> bool:
  """Whether a command shows progress bars (not with ``--quiet``)."""
  return not getattr(args, "quiet", False)


def _add_data_options(p: argparse.ArgumentParser, reads_bundle: bool = True) -> None:
  """``--data-dir`` and ``--download``, for the commands that take ``--dataset``;
  ``reads_bundle`` False for ``import``, which has no input bundle to take a default from."""
  default = ("the bundle's training config.data_dir, else tfds' own, $TFDS_DATA_DIR or "
             "~/tensorflow_datasets)" if reads_bundle else
             "tfds' own, $TFDS_DATA_DIR or ~/tensorflow_datasets; recorded as the new "
             "bundle's config.data_dir, the later commands' default)")
  p.add_argument("--data-dir", type=path_value, default=None, metavar="DIR",
                 help=f"where tfds keeps prepared datasets (tfds: datasets only; default: "
                      f"{default}")
  p.add_argument("--download", action="store_true",
                 help="let tfds download and prepare a tfds: dataset missing from the data "
                      "dir (needs internet and TensorFlow: pip install 'mnemonic-jax[tfds]'); "
                      "without it a missing dataset is refused at once")


def _add_subcommand(subparsers, name: str, help_text: str, description: str, epilog: str,
                    parents: Sequence[argparse.ArgumentParser]) -> argparse.ArgumentParser:
  return subparsers.add_parser(
      name, help=help_text, description=description, epilog=epilog, parents=list(parents),
      formatter_class=_Formatter, allow_abbrev=False)


def version() -> str:
  """This package's version, read without importing it (and so without importing JAX).

  The installed distribution's metadata when there is one, else the ``__version__`` line
  of ``mnemonic_jax/__init__.py`` (a source checkout on ``PYTHONPATH``).
  """
  source = pathlib.Path(__file__).parents[1] / "__init__.py"
  try:
    match = re.search(r'^__version__ = "([^"]+)"', source.read_text(), re.MULTILINE)
  except OSError:
    match = None
  if match:
    return match.group(1)
  try:
    return importlib.metadata.version("mnemonic-jax")
  except importlib.metadata.PackageNotFoundError:
    return "unknown"


def build_parser() -> argparse.ArgumentParser:
  """The ``mnemonic-jax`` argument parser with its six subcommands (imports no JAX)."""
  common = argparse.ArgumentParser(add_help=False)
  common.add_argument("-q", "--quiet", action="store_true",
                      help="hide progress bars (results are still printed)")
  cache = common.add_mutually_exclusive_group()
  cache.add_argument(
      "--compilation-cache", type=path_value, default=None, metavar="DIR",
      help="keep compiled programs in DIR, so that later runs skip compiling (default: "
           f"${CACHE_ENV} if set, else $JAX_COMPILATION_CACHE_DIR if set, else "
           f"{default_cache_hint()}; a DIR named here or in a variable that cannot be "
           "created is refused, the default one skipped)")
  cache.add_argument("--no-compilation-cache", action="store_true",
                     help=f"compile afresh and keep nothing (also: {CACHE_ENV}=off)")

  parser = _Parser(
      prog=PROG, formatter_class=_Formatter, allow_abbrev=False,
      description="One-shot class unlearning with mnemonic codes (JAX/Flax): train a "
                  "model with codes, forget classes from its checkpoint without data, "
                  "evaluate the result.",
      epilog="examples:\n"
             "  mnemonic-jax demo                       # train, forget class 3, plot (~30 s)\n"
             "  mnemonic-jax train --config digits_mlp:quick --workdir runs/digits\n"
             "  mnemonic-jax forget --checkpoint runs/digits/bundle --classes 3 "
             "--output runs/digits-no3\n"
             "  mnemonic-jax evaluate --checkpoint runs/digits-no3\n\n"
             "run 'mnemonic-jax COMMAND --help' for each command's options")
  parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
  sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

  p = _add_subcommand(
      sub, "train", "train a model with mnemonic codes from a config file (resumable)",
      "Trains a model with mnemonic codes mixed into its data (Algorithm 1), saving "
      "training checkpoints to WORKDIR/train every config.checkpoint_every steps and the "
      "finished bundle to WORKDIR/bundle; then prints its test accuracy. Run the same "
      "command again after an interruption and it resumes from the last complete "
      "checkpoint, ending with exactly the parameters of an uninterrupted run; SIGTERM (a "
      "preemption notice) saves the step of the next check first (exit 143). A loss that "
      "becomes NaN or inf stops the run there, unsaved (exit 2). The config "
      "is validated before WORKDIR is touched; one run at a time holds WORKDIR/.lock, and "
      "a second run on the same WORKDIR is refused. Run again on a finished WORKDIR, it "
      "says so and writes nothing. The mean step metrics of every config.log_every steps "
      "go to WORKDIR/metrics.jsonl (and to TensorBoard in WORKDIR/tensorboard when CLU is "
      "installed). A model of your own: define a Flax module in the config file (or your "
      "package) and register it there with mnemonic_jax.register_model; its bundle records "
      "where it came from, so forget and evaluate find it.",
      "config overrides:\n"
      "  --config.FIELD=VALUE sets a field of the config (nested fields with dots). VALUE\n"
      "  is read as the field's type (5, 0.01, (64,), True; a string as written).\n\n"
      "examples:\n"
      "  mnemonic-jax train --config digits_mlp --workdir runs/digits\n"
      "  mnemonic-jax train --config digits_mlp:quick \\\n"
      "      --config.epochs=5 --config.model_kwargs.hidden='(64,)' --workdir runs/small",
      [common])
  p.add_argument("--config", required=True, type=config_spec, metavar="NAME[:VARIANT]",
                 help="a packaged config (digits_mlp, fashion_mnist_mlp, cifar10_resnet18, "
                      "...: mnemonic_jax.configs) or a python file defining "
                      "get_config(variant) (ml_collections)")
  p.add_argument("--workdir", required=True, type=path_value,
                 help="run directory (train/ checkpoints, bundle/ result)")
  distributed.add_arguments(p)  # --coordinator, --num-processes, --process-id

  p = _add_subcommand(
      sub, "forget", "forget classes from a bundle, data-free (one shot)",
      "Forgets whole classes from a trained bundle in one shot, from its mnemonic codes "
      "alone, and writes the result as a new bundle. The input is never modified. By "
      "default it erases the forgotten classes' directions from the classifier head, hands "
      "each one's evidence to the remaining classes nearest it and lowers their output "
      "bias until their codes are misclassified (--move reassign); "
      "--move paper or --lambda1/--lambda2 run the paper's "
      "Algorithm 2. Prints the move, the accuracy on the codes before and after and the "
      "time taken; with --dataset also the per-class test accuracy, A_R and E_F.",
      "examples:\n"
      "  mnemonic-jax forget --checkpoint runs/digits/bundle --classes 3 "
      "--output runs/digits-no3\n"
      "  mnemonic-jax forget --checkpoint runs/digits/bundle --classes 3,7 "
      "--output runs/digits-no37 \\\n"
      "      --lambda1 1e-3 --lambda2 10 --dataset digits --force\n"
      "  mnemonic-jax forget --checkpoint runs/digits/bundle --classes 3 "
      "--output runs/digits-no3-paper --move paper",
      [common])
  p.add_argument("--checkpoint", required=True, type=path_value, metavar="IN",
                 help="the bundle to forget from (only read)")
  p.add_argument("--classes", required=True, type=class_list, metavar="C[,C...]",
                 help="class ids to forget, comma-separated")
  p.add_argument("--output", required=True, type=output_value, metavar="OUT",
                 help="the bundle to write")
  p.add_argument("--lambda1", type=lambda_value, default=None,
                 help="the paper's move: upper bound of the per-tensor step, or 'auto' (its "
                      "data-free search on the codes, as --move paper). Without either "
                      "lambda the default move runs; if only --lambda2 is a number, the "
                      f"bundle's config.lambda1, else {DEFAULT_LAMBDA1:g}")
  p.add_argument("--lambda2", type=lambda_value, default=None,
                 help="the paper's move: bound of the largest move per tensor, or 'auto' "
                      "(as --lambda1); if only --lambda1 is a number, the bundle's "
                      f"config.lambda2, else {DEFAULT_LAMBDA2:g}")
  p.add_argument("--dataset", type=name_value, default=None, metavar="NAME",
                 help="also evaluate on this dataset's test split (e.g. digits, "
                      "fashion_mnist, idx:DIR, tfds:mnist)")
  _add_data_options(p)
  p.add_argument("--move", choices=MOVES, default=None, metavar="MOVE",
                 help="a move of mnemonic_jax.forgetting.MOVES: 'reassign' (the default "
                      "without lambdas: erase the forgotten classes' directions from every "
                      "row of the classifier head, hand each one's evidence to the "
                      "remaining classes nearest it, then lower their output bias until "
                      "their codes are misclassified by a margin of 15; an output-layer "
                      "change), 'erase' (the same without the hand-over), 'bias' (the "
                      "output bias alone), 'paper' (the paper's eq. "
                      "5, +/- alpha * eta, lambdas searched on the codes; with numbers for "
                      "--lambda1/--lambda2 it takes them: 'algorithm2'), 'algorithm2' "
                      "(the paper's Algorithm 2 with --lambda1/--lambda2, what given "
                      "lambdas select) or another registered move; an unknown name lists them all")
  p.add_argument("--microbatch-size", type=positive_int, default=None, metavar="N",
                 help="codes per Fisher microbatch (bounds memory for big models)")
  p.add_argument("--force", action="store_true", help="replace an existing OUT bundle")
  distributed.add_arguments(p)  # --coordinator, --num-processes, --process-id

  p = _add_subcommand(
      sub, "evaluate", "per-class accuracy of a bundle, with A_R and E_F; --depth: how deep "
      "the forgetting went",
      "Evaluates a bundle on a labelled split: per-class accuracy, overall accuracy, and "
      "A_R (accuracy on the remaining classes) and E_F (error on the forgotten classes) "
      "when its history has forgotten classes.\n\n"
      "With --depth, also runs the depth attacks (mnemonic_jax.evaluation) on the classes "
      "its history forgot, each asking whether the class is still inside the model: one "
      "constant added to the forgotten logits, input scaling, a linear probe and nearest "
      "class means on the penultimate features, the prototype attack, head fine-tuning, "
      "relearning time, CKA of the features and weight distance. They are scored on SPLIT "
      "(test); the attacker's few labelled images and the probe's come from the train "
      "split. With --oracle (the model retrained without those classes) it prints the "
      "oracle's figures, the gaps, the depth goals as pass/fail, and a "
      "verdict saying whether the forgetting is output-level only; with --original (the "
      "model forgotten from) also relearning, and CKA and distance to the original.",
      "examples:\n"
      "  mnemonic-jax evaluate --checkpoint runs/digits-no3\n"
      "  mnemonic-jax evaluate --checkpoint runs/fmnist/bundle --dataset fashion_mnist "
      "--json > eval.json\n"
      "  mnemonic-jax evaluate --checkpoint runs/digits-no3 --depth "
      "--oracle runs/digits-oracle3 \\\n"
      "      --original runs/digits/bundle\n"
      "  mnemonic-jax evaluate --checkpoint runs/digits-no3 --depth logits,features",
      [common])
  p.add_argument("--checkpoint", required=True, type=path_value, metavar="CKPT",
                 help="the bundle to evaluate")
  p.add_argument("--dataset", type=name_value, default=None, metavar="NAME",
                 help="dataset to evaluate on (default: the bundle's training dataset)")
  _add_data_options(p)
  p.add_argument("--split", type=split_name, default="test",
                 help="split to evaluate on (default: %(default)s)")
  p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
  p.add_argument("--depth", nargs="?", const=DEPTH_GROUPS, default=None, type=depth_attacks,
                 metavar="ATTACKS",
                 help="also run the depth attacks on the forgotten classes: all (the "
                      "default) or some of logits (one constant, input scaling), features "
                      "(probe, nearest class mean, prototype, head fine-tuning, CKA), "
                      "relearning (needs --original), weights (distance; needs --oracle or "
                      "--original), comma-separated")
  p.add_argument("--oracle", type=path_value, default=None, metavar="ORACLE",
                 help="with --depth: the retrain oracle, the same model trained from scratch "
                      "without the forgotten classes (e.g. the baselines' 'retrain'): its "
                      "figures, the gaps, the depth goals and the verdict. Refused when it "
                      "gets more than 10%% of the forgotten classes' test images right")
  p.add_argument("--original", type=path_value, default=None, metavar="ORIGINAL",
                 help="with --depth: the bundle CKPT was forgotten from (its history does not "
                      "say where that is), for relearning and CKA and distance to it. "
                      "Refused when it gets 10%% or less of the forgotten classes' test "
                      "images right")
  p.add_argument("--probe-examples", type=positive_int, default=None, metavar="N",
                 help="with --depth: training images per class the linear probe is fitted "
                      "on (default: 500; fewer is faster on a large dataset)")
  p.add_argument("--relearn-steps", type=positive_int, default=None, metavar="N",
                 help="with --depth: the most relearning steps per model (default: 500; a "
                      "level not reached by then is reported as not reached)")
  distributed.add_arguments(p)  # --coordinator, --num-processes, --process-id

  p = _add_subcommand(
      sub, "import", "make a bundle from parameters trained with your own loop",
      "Writes a bundle from parameters trained outside mnemonic-jax (an Orbax PyTree "
      "checkpoint directory or a flax msgpack file, holding the params tree or a "
      "{'params', 'batch_stats'} dict) and the mnemonic codes they were trained with, "
      "checking that both fit the named model. The params tree must be the one the "
      "registered model builds (mlp: Dense_0 ... Dense_N, one per hidden layer and the "
      "head); an architecture of your own needs the Python API (docs/checkpoints.md).\n\n"
      "A model trained without codes: pass any codes of the right shape, e.g. drawn with "
      "mnemonic_jax.generate_codes and saved with numpy.save (the command then warns "
      "that the model does not classify them); then the command attach-codes draws new "
      "codes for the imported bundle and teaches them to the model.",
      "examples:\n"
      "  mnemonic-jax import --params params.msgpack --codes codes.npy --model mlp \\\n"
      "      --model-kwargs '{\"hidden\": [1000]}' --num-classes 10 --input-shape 28,28,1 \\\n"
      "      --mean 0.1307 --std 0.3081 --dataset tfds:mnist --output runs/imported\n\n"
      "codes for a model trained without them (then attach-codes):\n"
      "  python -c \"import jax, numpy as np, mnemonic_jax as mj; np.save('codes.npy', \\\n"
      "      mj.generate_codes(jax.random.key(0), 10, (28, 28, 1)))\"",
      [common])
  p.add_argument("--params", required=True, type=path_value, metavar="FILE_OR_DIR",
                 help="Orbax PyTree checkpoint directory or flax msgpack file")
  p.add_argument("--codes", required=True, type=file_value, metavar="CODES.npy",
                 help="the codes the model was trained with, shape (num_classes, "
                      "*input_shape), saved with numpy.save; for a model trained without "
                      "codes, any such array (mnemonic_jax.generate_codes), then "
                      "attach-codes")
  p.add_argument("--model", required=True, type=model_name,
                 help="registered model name: mlp, resnet18_cifar, resnet18 or vit_tiny; "
                      "the params tree must be the one it builds")
  p.add_argument("--model-kwargs", type=json_object, default={}, metavar="JSON",
                 help="the model's other attributes as a JSON object; mlp's: hidden "
                      "(default [1000]) and activation (default sigmoid; relu, gelu, tanh), "
                      "e.g. '{\"hidden\": [256], \"activation\": \"relu\"}'")
  p.add_argument("--num-classes", required=True, type=positive_int, help="number of classes")
  p.add_argument("--input-shape", required=True, type=int_tuple, metavar="H,W,C",
                 help="shape of one input")
  p.add_argument("--mean", type=float_tuple, default=None, metavar="M[,M...]",
                 help="per-channel mean the model's training subtracted from images scaled "
                      "to [0, 1], so in [0, 1]: divide 0-255 statistics by 255 (default: the "
                      "training statistics of --dataset; required without it)")
  p.add_argument("--std", type=float_tuple, default=None, metavar="S[,S...]",
                 help="per-channel std the centred images were divided by (as --mean, so "
                      "at most 0.5, or 1; --mean 0 --std 1 for images only scaled to [0, 1])")
  p.add_argument("--class-names", type=class_names_value, default=None,
                 metavar="NAME[,NAME...]",
                 help="one name per class, comma-separated")
  p.add_argument("--dataset", type=name_value, default=None, metavar="NAME",
                 help="the training dataset (evaluate's default; its training statistics "
                      "are the default --mean and --std)")
  _add_data_options(p, reads_bundle=False)
  p.add_argument("--output", required=True, type=output_value, metavar="OUT",
                 help="the bundle to write")
  p.add_argument("--force", action="store_true", help="replace an existing OUT bundle")

  p = _add_subcommand(
      sub, "attach-codes", "fine-tune a model trained without codes so that it can forget",
      "Makes a checkpoint that was trained without mnemonic codes (t_mix = 0, or brought "
      "in with 'import') able to forget: draws a fresh code per class and fine-tunes the "
      "model with codes mixed into its training data (Algorithm 1, each example replaced "
      "by its class's code with probability --t-mix) for --epochs epochs, with the "
      "optimiser settings of the bundle's training config. Writes the result, with the "
      "new codes and a history entry saying codes were attached, as a new bundle; the "
      "input is never modified. Prints the test accuracy before and after and how many "
      "codes the model classifies right. Then forget from OUT with 'mnemonic-jax forget'.",
      "examples:\n"
      "  mnemonic-jax attach-codes --checkpoint runs/plain/bundle --output runs/coded "
      "--epochs 2\n"
      "  mnemonic-jax forget --checkpoint runs/coded --classes 3 --output runs/no3 "
      "--dataset fashion_mnist\n\n"
      "a model trained without codes, to try it on:\n"
      "  mnemonic-jax train --config fashion_mnist_mlp:e100 "
      "--config.t_mix=0.0 --workdir runs/plain",
      [common])
  p.add_argument("--checkpoint", required=True, type=path_value, metavar="IN",
                 help="the bundle to attach codes to (only read)")
  p.add_argument("--output", required=True, type=output_value, metavar="OUT",
                 help="the bundle to write")
  p.add_argument("--dataset", type=name_value, default=None, metavar="NAME",
                 help="training data to fine-tune on, with the model's classes and input "
                      "shape (default: the bundle's training dataset)")
  _add_data_options(p)
  p.add_argument("--epochs", type=positive_int, default=DEFAULT_ATTACH_EPOCHS, metavar="K",
                 help="fine-tuning epochs (default: %(default)s)")
  p.add_argument("--t-mix", type=mix_rate, default=None, metavar="P",
                 help="probability of replacing an example by its class's code, in (0, 1] "
                      "(default: 0.1, the paper's MNIST setting)")
  p.add_argument("--seed", type=seed_value, default=0,
                 help="seed of the codes and of the fine-tuning (default: %(default)s)")
  p.add_argument("--code-distribution", choices=("uniform", "normal"), default="uniform",
                 help="uniform [0, 1) (the reference implementation) or normal N(0, 1), in "
                      "the model's input space (default: %(default)s)")
  p.add_argument("--learning-rate", type=positive_float, default=None, metavar="LR",
                 help="default: the bundle's training config's (0.01 if it records none)")
  p.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                 help="default: the bundle's training config's (128 if it records none)")
  p.add_argument("--force", action="store_true", help="replace an existing OUT bundle")

  p = _add_subcommand(
      sub, "demo", "train, forget one class and plot, on the bundled digits (~30 s on a CPU)",
      "The whole method on the embedded default: trains the paper's MLP (64-1000 "
      "sigmoid-10) with mnemonic codes on scikit-learn's bundled 8x8 digits (the settings "
      "of the packaged config digits_mlp, fewer epochs), forgets one class from the "
      "codes alone, and prints the per-class test accuracy before and after, A_R, E_F "
      "and the seconds forgetting took.\n\n"
      f"Writes into OUTPUT_DIR: {DEMO_FILES[0]}/ and {DEMO_FILES[1]}/ (the bundles) and "
      f"{DEMO_FILES[2]} (bar chart). An existing OUTPUT_DIR is reused, but if any of "
      "these three exists the demo is refused before training unless --force is given; "
      "then they are replaced and anything else in OUTPUT_DIR is left alone (a non-bundle "
      "directory, or a bundle holding other files, in the way of a bundle is refused "
      "even with --force, not deleted; a symlink is replaced, never written through). "
      "Training checkpoints go to a temporary directory, so every run trains afresh.",
      "examples:\n"
      "  mnemonic-jax demo\n"
      "  mnemonic-jax demo --output-dir /tmp/demo --class 7 --epochs 100 --force",
      [common])
  p.add_argument("--output-dir", type=path_value, default=pathlib.Path("mnemonic-demo"),
                 metavar="DIR", help="where the bundles and the chart go (default: ./%(default)s)")
  p.add_argument("--class", dest="forget_class", type=class_id, default=3, metavar="N",
                 help="the class to forget, 0-9 (default: %(default)s)")
  p.add_argument("--epochs", type=positive_int, default=DEMO_EPOCHS,
                 help="training epochs (default: %(default)s; the paper trains 200)")
  p.add_argument("--force", action="store_true",
                 help="replace the outputs of an earlier demo in OUTPUT_DIR")
  return parser


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """``--config.FIELD=VALUE`` pairs apart from the other arguments.

  As :func:`mnemonic_jax.configs.split_overrides`; ml_collections is imported only when
  there are some, so ``--help`` stays fast.

  Args:
    argv: the command line's arguments.

  Returns:
    ``(the other arguments, [(field, value), ...])``.

  Raises:
    mnemonic_jax.errors.BadConfig: an override without a field or a value.
  """
  if not any(arg.startswith(_OVERRIDE_PREFIX) for arg in argv):
    return list(argv), []
  from mnemonic_jax import configs  # pylint: disable=import-outside-toplevel

  return configs.split_overrides(argv)
