"""The paper's ImageNet setting: fine-tune a pretrained model with codes, then forget.

The paper fine-tunes ImageNet-pretrained ResNet-18 / ResNeXt-50 / Swin-T with codes
(t_mix 0.3) and forgets one class: ResNet-18 A_R 67.5, E_F 100, 8.66 s; Swin-T A_R 75.3,
E_F 92.0, 28.6 s. It gives neither the fine-tuning schedule nor the lambdas; ours:
SGD lr 0.01 momentum 0.9 weight decay 5e-5, batch 256, 5 epochs, cosine, crop+flip, and
lambdas from the data-free search (``"auto"``, :mod:`mnemonic_jax.forgetting.moves.paper_search`).

Models (the variant picks one; ResNeXt-50 and Swin-T are not in the registry):
  ``resnet18`` (default): ResNet-18, ImageNet stem, 224x224.
  ``vit_tiny``: ViT-Ti/16 (dim 192, depth 12, 3 heads, MLP 768), 224x224.
Add ``,quick`` (e.g. ``vit_tiny,quick``) for a CPU smoke run: a narrow/shallow model,
1 epoch, no pretrained weights (it still needs the data).

Data: ImageNet-1k at 224x224 as fixed-size uint8 images: tfds' ``imagenet2012`` has
images of varying size, so build a resized copy as a tfds dataset (named
``imagenet2012_224`` here; change ``dataset`` to yours). Note that
:func:`mnemonic_jax.data.load_dataset` holds a split in host memory (~190 GB for the
train split at 224x224): fine-tuning at this scale needs a streaming input pipeline, which
the project does not have yet (reported).

Pretrained weights: ``pretrained`` must point to a bundle directory or an Orbax/msgpack
file of the model's params/variables (as :func:`mnemonic_jax.checkpointing.import_params`
reads). The 1000-way head is kept (``pretrained_skip`` is empty): codes are added, not
classes. :func:`mnemonic_jax.workflow.train` loads them before the first step.
"""

import ml_collections

from mnemonic_jax.configs import ConfigError, paper_config

MODELS = {
    "resnet18": ("resnet18", {"width": 64}, {"width": 8}),
    "vit_tiny": ("vit_tiny", {"patch_size": 16, "dim": 192, "depth": 12, "num_heads": 3,
                              "mlp_dim": 768},
                 {"patch_size": 16, "dim": 32, "depth": 2, "num_heads": 2, "mlp_dim": 64}),
}


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  parts = [p for p in variant.split(",") if p]
  quick = "quick" in parts
  models = [p for p in parts if p != "quick"]
  if len(models) > 1 or any(m not in MODELS for m in models):
    raise ConfigError(
        f"unknown variant {variant!r}; use one of {sorted(MODELS)}, optionally with ',quick'")
  arch = models[0] if models else "resnet18"
  model, kwargs, quick_kwargs = MODELS[arch]

  config = paper_config(
      f"imagenet_finetune_{arch}", "tfds:imagenet2012_224", model,
      quick_kwargs if quick else kwargs, t_mix=0.3, epochs=1 if quick else 5,
      batch_size=256, schedule="cosine", augment=True, lambda1="auto", lambda2="auto",
      weight_decay=5e-5, pretrained=ml_collections.FieldReference(None, field_type=str),
      pretrained_skip=())
  return config
