"""A PyTorch transcription of the paper's Algorithms 1 and 2, for side-by-side benchmarks.

Written from the text of Yamashita, Yamada, Shibata, "One-Shot Machine Unlearning with
Mnemonic Code", ACML 2024 (arXiv 2306.05670), as summarised in the project's PAPER.md
(Algorithm 1: training with mnemonic codes mixed in; Algorithm 2: the one-shot
forgetting; the numerics it lists). **No code was copied from the published reference
implementation**: its licence forbids that. This is a clean-room baseline, so that the
benchmarks of ``experiments/bench_*.py`` can run a PyTorch implementation of the same
method in the same command as mnemonic-jax and divide figures of one run.

What it implements (CPU PyTorch, float32):

* Algorithm 1 (:func:`train_epoch`): one code per class, uniform on [0, 1) in the
  model's input space (:func:`generate_codes`); every example of a step is replaced by its
  class's code with probability ``t_mix``, independently (:func:`mix_codes`); then one
  SGD step (lr 0.01, momentum 0.9, coupled weight decay 5e-4: :func:`make_optimizer`).
* Algorithm 2 (:func:`forget`): with the model in inference mode, one gradient of the
  cross-entropy per class code, in a loop over the codes (:func:`code_fishers`);
  ``f_F``, ``f_R`` the means of the squared gradients over the forgotten and remaining
  classes, both accumulators started at 1e-16; ``eta = f_F / f_R`` through the log ratio,
  NaN -> 0 and +inf -> the tensor's largest finite value (:func:`fisher_ratio`);
  ``alpha_l = min(lambda1, lambda2 / max eta_l)`` per tensor (:func:`step_sizes`); the
  candidates ``w + alpha eta`` and ``w - alpha eta``; the one with the larger
  ``(1 - acc on forgotten codes) + (acc on remaining codes)`` is kept, ``w - alpha eta`` on
  a tie (PAPER.md: the reference keeps it on a tie). Where the text leaves a case open (a
  tensor without any finite log ratio), the ratio is 1 there.
* The models of the benchmarks: the paper's MLP (:func:`mlp`) and ResNet-18 with the
  CIFAR stem (:func:`resnet18_cifar`), both taking inputs ``(N, H, W, C)`` as the
  project's Flax models do, and the conversion of a mnemonic-jax parameter tree into them
  (:func:`load_flax_params`) and back (:func:`flax_params`).

``torch`` is imported lazily (inside functions): importing this module needs neither
torch nor JAX, and the package ``mnemonic_jax`` never needs torch. Install it with the
``bench`` extra (``pip install -e ".[bench]"``, CPU torch).

Command line: the reference's load-forget-save, as a user would run it::

  python -m experiments.torch_reference forget --checkpoint IN.pt --classes 3 \\
      --lambda1 1e-3 --lambda2 10 --output OUT.pt

where ``IN.pt`` is written by :func:`save_checkpoint` (``experiments/bench_cli.py``
writes one from a mnemonic-jax bundle).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from typing import Any, Sequence

#: One line every benchmark prints about this baseline.
PROVENANCE = ("PyTorch side: experiments/torch_reference.py, a transcription of the paper's "
              "Algorithms 1 and 2 written from the paper's text; no code of the published "
              "reference implementation was copied (its licence forbids it)")

EPS = 1e-16  # Where both Fisher accumulators start (PAPER.md, Algorithm 2, step 2).


def import_torch():
  """The ``torch`` module.

  Raises:
    ImportError: torch is not installed (the message names the ``bench`` extra).
  """
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("PyTorch is not installed; install the benchmarks' extra: "
                      "pip install -e '.[bench]'") from e
  return torch


def torch_version() -> str | None:
  """The installed torch version, or None without torch (nothing is imported then)."""
  import importlib.util  # pylint: disable=import-outside-toplevel

  if importlib.util.find_spec("torch") is None:
    return None
  return import_torch().__version__


# ----------------------------------------------------------------------------------------
# Models: inputs (N, H, W, C), as the project's Flax models take them.


@functools.lru_cache(maxsize=None)
def _classes() -> dict[str, type]:
  """The model classes, defined on first use (they subclass ``torch.nn.Module``)."""
  torch = import_torch()
  nn = torch.nn

  class MLP(nn.Module):
    """Flattened input, hidden ``Linear`` layers with an activation, a ``Linear`` head."""

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int,
                 activation: str):
      super().__init__()
      widths = [in_features, *hidden, num_classes]
      self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
      self.act = {"sigmoid": torch.sigmoid, "relu": torch.relu, "tanh": torch.tanh,
                  "gelu": nn.functional.gelu}[activation]

    def forward(self, x):
      x = x.reshape(x.shape[0], -1)
      for layer in self.layers[:-1]:
        x = self.act(layer(x))
      return self.layers[-1](x)

  class Block(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a residual connection (He et al., 2016)."""

    def __init__(self, cin: int, cout: int, stride: int):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(cout)
      self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(cout)
      self.short = None
      if stride != 1 or cin != cout:
        self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                   nn.BatchNorm2d(cout))

    def forward(self, x):
      y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
      return torch.relu(y + (x if self.short is None else self.short(x)))

  class ResNet18(nn.Module):
    """ResNet-18, CIFAR stem (3x3 stride-1 convolution, no max-pool)."""

    def __init__(self, num_classes: int, width: int, channels: int):
      super().__init__()
      self.conv = nn.Conv2d(channels, width, 3, 1, 1, bias=False)
      self.bn = nn.BatchNorm2d(width)
      blocks, cin = [], width
      for stage, mult in enumerate((1, 2, 4, 8)):
        for block in range(2):
          blocks.append(Block(cin, width * mult, 2 if stage > 0 and block == 0 else 1))
          cin = width * mult
      self.blocks = nn.Sequential(*blocks)
      self.head = nn.Linear(cin, num_classes)

    def forward(self, x):
      x = x.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W).
      x = self.blocks(torch.relu(self.bn(self.conv(x))))
      return self.head(x.mean(dim=(2, 3)))

  return {"mlp": MLP, "resnet18_cifar": ResNet18}


def mlp(in_features: int = 784, hidden: Sequence[int] = (1000,), num_classes: int = 10,
        activation: str = "sigmoid"):
  """The paper's MLP (784-1000 sigmoid-10 by default), a ``torch.nn.Module``.

  Args:
    in_features: size of one flattened input.
    hidden: widths of the hidden layers.
    num_classes: number of logits.
    activation: ``sigmoid``, ``relu``, ``tanh`` or ``gelu``.

  Returns:
    The model (float32, CPU), ``forward(x (N, H, W, C)) -> logits (N, num_classes)``.
  """
  return _classes()["mlp"](in_features, tuple(hidden), num_classes, activation)


def resnet18_cifar(num_classes: int = 10, width: int = 64, channels: int = 3):
  """ResNet-18 with the CIFAR stem, ``forward(x (N, H, W, C)) -> logits``.

  Args:
    num_classes: number of logits.
    width: channels of the first stage (64 in the standard model).
    channels: input channels.
  """
  return _classes()["resnet18_cifar"](num_classes, width, channels)


def build(name: str, kwargs: dict[str, Any]):
  """A model by name (``mlp`` or ``resnet18_cifar``) and its constructor's arguments."""
  return {"mlp": mlp, "resnet18_cifar": resnet18_cifar}[name](**kwargs)


def _flax_names(model) -> list[tuple[str, tuple[str, ...], str]]:
  """``(torch name, flax path, kind)`` for every parameter and BatchNorm statistic.

  ``kind``: ``linear`` (kernel = weight.T), ``conv`` (HWIO <-> OIHW), ``plain``, and
  ``mean`` / ``var`` for BatchNorm statistics (the Flax ``batch_stats`` collection).
  """
  names = []
  if hasattr(model, "layers"):  # MLP: Dense_0, Dense_1, ...
    for i in range(len(model.layers)):
      names += [(f"layers.{i}.weight", (f"Dense_{i}", "kernel"), "linear"),
                (f"layers.{i}.bias", (f"Dense_{i}", "bias"), "plain")]
    return names

  def norm(torch_prefix, flax_path):
    return [(f"{torch_prefix}.weight", (*flax_path, "scale"), "plain"),
            (f"{torch_prefix}.bias", (*flax_path, "bias"), "plain"),
            (f"{torch_prefix}.running_mean", (*flax_path, "mean"), "mean"),
            (f"{torch_prefix}.running_var", (*flax_path, "var"), "var")]

  names += [("conv.weight", ("Conv_0", "kernel"), "conv"), *norm("bn", ("BatchNorm_0",))]
  for i, block in enumerate(model.blocks):
    b = f"BasicBlock_{i}"
    names += [(f"blocks.{i}.conv1.weight", (b, "Conv_0", "kernel"), "conv"),
              *norm(f"blocks.{i}.bn1", (b, "BatchNorm_0")),
              (f"blocks.{i}.conv2.weight", (b, "Conv_1", "kernel"), "conv"),
              *norm(f"blocks.{i}.bn2", (b, "BatchNorm_1"))]
    if block.short is not None:
      names += [(f"blocks.{i}.short.0.weight", (b, "Conv_2", "kernel"), "conv"),
                *norm(f"blocks.{i}.short.1", (b, "BatchNorm_2"))]
  return names + [("head.weight", ("Dense_0", "kernel"), "linear"),
                  ("head.bias", ("Dense_0", "bias"), "plain")]


def load_flax_params(model, params: dict, batch_stats: dict | None = None) -> None:
  """Copies a mnemonic-jax (Flax) parameter tree into ``model``, in place.

  Args:
    model: from :func:`mlp` or :func:`resnet18_cifar`, with the Flax model's shapes.
    params: the Flax ``params`` tree (nested dicts of arrays; anything ``numpy.asarray``
      reads, e.g. jax arrays).
    batch_stats: the Flax ``batch_stats`` tree (ResNet only).

  Raises:
    KeyError, ValueError: a tree that does not match the model.
  """
  import numpy as np  # pylint: disable=import-outside-toplevel

  torch = import_torch()
  trees = {"mean": batch_stats, "var": batch_stats}
  state = {}
  for name, path, kind in _flax_names(model):
    node = trees.get(kind, params)
    for key in path:
      node = node[key]
    value = np.asarray(node, np.float32)
    value = {"linear": lambda v: v.T, "conv": lambda v: v.transpose(3, 2, 0, 1)}.get(
        kind, lambda v: v)(value)
    state[name] = torch.tensor(np.ascontiguousarray(value))
  model.load_state_dict(state, strict=False)
  missing = [k for k in model.state_dict() if k not in state and "num_batches" not in k]
  if missing:
    raise KeyError(f"no Flax value for {missing}")


def flax_params(model) -> dict:
  """The trainable parameters of ``model`` as a Flax-shaped tree of float32 NumPy arrays."""
  tree: dict = {}
  state = model.state_dict()
  for name, path, kind in _flax_names(model):
    if kind in ("mean", "var"):
      continue
    value = state[name].detach().numpy()
    value = {"linear": lambda v: v.T, "conv": lambda v: v.transpose(2, 3, 1, 0)}.get(
        kind, lambda v: v)(value)
    node = tree
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = value.copy()
  return tree


# ----------------------------------------------------------------------------------------
# Algorithm 1: training with mnemonic codes.


def generate_codes(num_classes: int, shape: Sequence[int], generator=None,
                   distribution: str = "uniform"):
  """One code per class, ``(num_classes, *shape)`` float32: uniform [0, 1) or N(0, 1)."""
  torch = import_torch()
  draw = torch.rand if distribution == "uniform" else torch.randn
  return draw((num_classes, *shape), generator=generator)


def mix_codes(x, labels, codes, t_mix: float, generator=None):
  """Replaces each example by its label's code with probability ``t_mix`` (labels kept).

  Args:
    x: a batch ``(N, *shape)`` in the model's input space.
    labels: int64 ``(N,)``.
    codes: ``(C, *shape)``.
    t_mix: replacement probability.
    generator: a ``torch.Generator`` (None: torch's default).

  Returns:
    ``(mixed batch, replaced mask (N,) bool)``.
  """
  torch = import_torch()
  replaced = torch.rand(labels.shape[0], generator=generator) < t_mix
  mask = replaced.reshape(-1, *([1] * (x.ndim - 1)))
  return torch.where(mask, codes[labels], x), replaced


def make_optimizer(model, learning_rate: float = 0.01, momentum: float = 0.9,
                   weight_decay: float = 5e-4):
  """The paper's optimiser: SGD with momentum and (coupled) weight decay."""
  torch = import_torch()
  return torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=momentum,
                         weight_decay=weight_decay)


def train_step(model, optimizer, x, labels):
  """One SGD step on the mean cross-entropy of a (mixed) batch; returns the loss tensor."""
  torch = import_torch()
  optimizer.zero_grad(set_to_none=True)
  loss = torch.nn.functional.cross_entropy(model(x), labels)
  loss.backward()
  optimizer.step()
  return loss.detach()


def train_epoch(model, optimizer, images, labels, codes, *, t_mix: float = 0.1,
                mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,),
                batch_size: int = 128, generator=None) -> float:
  """One epoch of Algorithm 1: shuffled full batches, codes mixed in, one SGD step each.

  Args:
    model: the classifier (put in training mode here).
    optimizer: from :func:`make_optimizer`.
    images: uint8 ``(N, H, W, C)`` tensor.
    labels: int64 ``(N,)`` tensor.
    codes: ``(num_classes, H, W, C)`` float32, in the normalised input space.
    t_mix: probability of replacing an example by its class's code.
    mean, std: per-channel normalisation of the images scaled to [0, 1].
    batch_size: examples per step; the remainder of the epoch is dropped.
    generator: a ``torch.Generator`` for the shuffle and the mixing.

  Returns:
    The mean loss over the epoch's steps.
  """
  torch = import_torch()
  model.train()
  std_t = torch.tensor(std, dtype=torch.float32)
  scale, offset = 1.0 / (255.0 * std_t), torch.tensor(mean, dtype=torch.float32) / std_t
  order = torch.randperm(labels.shape[0], generator=generator)
  steps = labels.shape[0] // batch_size
  total = torch.zeros(())
  for step in range(steps):
    index = order[step * batch_size:(step + 1) * batch_size]
    x = images[index].float().mul_(scale).sub_(offset)
    y = labels[index]
    x, _ = mix_codes(x, y, codes, t_mix, generator)
    total += train_step(model, optimizer, x, y)
  return float(total) / max(steps, 1)


# ----------------------------------------------------------------------------------------
# Algorithm 2: one-shot forgetting.


def squared_gradients(model, x, labels):
  """Per example ``n``: ``(n, {name: (dL(x_n, y_n)/dw)**2})``, one backward pass each.

  The loop over examples of Algorithm 2, step 1 (one gradient per class code). The model
  is put in inference mode (BatchNorm uses its running statistics).

  Args:
    model: the classifier.
    x: ``(N, H, W, channels)`` float32 inputs.
    labels: ``(N,)`` integer labels (a sequence or an int64 tensor).
  """
  torch = import_torch()
  model.eval()
  named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
  for i in range(x.shape[0]):
    model.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x[i:i + 1]),
                                             torch.as_tensor([int(labels[i])]))
    loss.backward()
    yield i, {n: p.grad.square() for n, p in named}


def fisher_diagonal(model, x, labels) -> dict:
  """The mean over the examples of the squared gradients (parameter name -> tensor)."""
  total: dict = {}
  for _, squares in squared_gradients(model, x, labels):
    for n, s in squares.items():
      total[n] = total[n].add_(s) if n in total else s.clone()
  return {n: s / x.shape[0] for n, s in total.items()}


def code_fishers(model, codes, forget: Sequence[int]) -> tuple[dict, dict]:
  """Steps 1-2: ``(f_F, f_R)``, mean squared gradients on the codes, a loop over codes.

  For each class ``c``, the gradient of the cross-entropy of its code labelled ``c``
  (:func:`squared_gradients`); both accumulators start at :data:`EPS` and are divided by
  their class counts.

  Args:
    model: the classifier.
    codes: ``(C, H, W, channels)`` float32, one per class in class order.
    forget: the forgotten classes; every other class remains.

  Returns:
    Two dicts parameter name -> tensor, shaped like the parameters.
  """
  torch = import_torch()
  forget = set(int(c) for c in forget)
  sums = ({n: torch.full_like(p, EPS) for n, p in model.named_parameters()},
          {n: torch.full_like(p, EPS) for n, p in model.named_parameters()})
  for c, squares in squared_gradients(model, codes, range(codes.shape[0])):
    acc = sums[0] if c in forget else sums[1]
    for n, s in squares.items():
      acc[n].add_(s)
  counts = (len(forget), codes.shape[0] - len(forget))
  return tuple({n: s / k for n, s in acc.items()} for acc, k in zip(sums, counts))


def fisher_ratio(f_forget, f_remain):
  """Step 3: ``eta = exp(log f_F - log f_R)``, cleaned in the log domain (one tensor).

  NaN becomes 0 (``eta = 1``), +inf the largest finite log ratio of the tensor (0 when it
  has none), -inf stays (``eta = 0``).
  """
  torch = import_torch()
  log_ratio = torch.log(f_forget) - torch.log(f_remain)
  log_ratio = torch.where(torch.isnan(log_ratio), torch.zeros_like(log_ratio), log_ratio)
  finite = log_ratio[torch.isfinite(log_ratio)]
  largest = finite.max() if finite.numel() else torch.zeros(())
  log_ratio = torch.where(log_ratio == float("inf"), largest, log_ratio)
  return torch.exp(log_ratio)


def step_sizes(eta: dict, lambda1: float, lambda2: float) -> dict:
  """Step 4: ``alpha_l = min(lambda1, lambda2 / max(eta_l))`` per tensor (floats)."""
  return {n: min(lambda1, lambda2 / float(e.max())) for n, e in eta.items()}


def code_accuracy(model, codes, classes: Sequence[int]) -> float:
  """Fraction of ``classes`` whose code the model classifies as its class."""
  torch = import_torch()
  if not classes:
    return 0.0
  with torch.no_grad():
    predicted = model(codes).argmax(-1)
  return sum(int(predicted[c]) == c for c in classes) / len(classes)


def forget(model, codes, forget_classes: Sequence[int], lambda1: float, lambda2: float,
           *, keep_candidates: bool = False) -> dict:
  """Algorithm 2 with fixed ``(lambda1, lambda2)``: the model is changed in place.

  Args:
    model: the classifier; its parameters become the kept candidate.
    codes: ``(C, H, W, channels)`` float32, one per class.
    forget_classes: classes to forget (the rest remain).
    lambda1, lambda2: the step bounds of eq. (7).
    keep_candidates: also return both candidates (parameter name -> tensor).

  Returns:
    ``{"sign": +1 or -1, "criterion": (plus, minus), "alpha": {name: float}}`` and, with
    ``keep_candidates``, ``"plus"`` and ``"minus"``.
  """
  torch = import_torch()
  remain = [c for c in range(codes.shape[0]) if c not in set(forget_classes)]
  f_forget, f_remain = code_fishers(model, codes, forget_classes)
  eta = {n: fisher_ratio(f_forget[n], f_remain[n]) for n in f_forget}
  alpha = step_sizes(eta, lambda1, lambda2)
  params = dict(model.named_parameters())
  with torch.no_grad():
    start = {n: p.detach().clone() for n, p in params.items()}
    out = {"alpha": alpha}
    scores = []
    for sign, key in ((1.0, "plus"), (-1.0, "minus")):
      candidate = {n: start[n] + sign * alpha[n] * eta[n] for n in eta}
      for n, value in candidate.items():
        params[n].copy_(value)
      scores.append(1.0 - code_accuracy(model, codes, forget_classes)
                    + code_accuracy(model, codes, remain))
      if keep_candidates:
        out[key] = candidate
      if sign > 0:
        plus = candidate
    out["criterion"] = tuple(scores)
    out["sign"] = 1 if scores[0] > scores[1] else -1  # A tie keeps w - alpha * eta.
    if out["sign"] > 0:
      for n, value in plus.items():
        params[n].copy_(value)
  return out


# ----------------------------------------------------------------------------------------
# Checkpoints and the load-forget-save command.


def save_checkpoint(path: str, model_name: str, kwargs: dict, model, codes) -> None:
  """Writes ``{model, kwargs, state_dict, codes}`` with ``torch.save``."""
  torch = import_torch()
  torch.save({"model": model_name, "kwargs": dict(kwargs), "state_dict": model.state_dict(),
              "codes": codes}, path)


def load_checkpoint(path: str):
  """``(model, codes, checkpoint dict)`` from a file of :func:`save_checkpoint`."""
  torch = import_torch()
  checkpoint = torch.load(path, weights_only=True)
  model = build(checkpoint["model"], checkpoint["kwargs"])
  model.load_state_dict(checkpoint["state_dict"])
  return model, checkpoint["codes"], checkpoint


def main(argv: Sequence[str] | None = None) -> int:
  """``forget --checkpoint IN --classes C --lambda1 L1 --lambda2 L2 --output OUT``."""
  parser = argparse.ArgumentParser(prog="experiments.torch_reference",
                                   description=__doc__.split("\n\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  run = sub.add_parser("forget", help="load a checkpoint, forget classes, save")
  run.add_argument("--checkpoint", required=True)
  run.add_argument("--classes", required=True, help="comma-separated class ids")
  run.add_argument("--lambda1", type=float, default=1e-3)
  run.add_argument("--lambda2", type=float, default=10.0)
  run.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
  run.add_argument("--output", required=True)
  args = parser.parse_args(argv)
  torch = import_torch()
  torch.set_num_threads(args.threads)
  start = time.perf_counter()
  model, codes, checkpoint = load_checkpoint(args.checkpoint)
  classes = [int(c) for c in args.classes.split(",")]
  info = forget(model, codes, classes, args.lambda1, args.lambda2)
  checkpoint["state_dict"] = model.state_dict()
  torch.save(checkpoint, args.output)
  print(f"forgot {classes}: kept sign {info['sign']:+d}, criterion {info['criterion']}, "
        f"{time.perf_counter() - start:.3f} s load-forget-save", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
