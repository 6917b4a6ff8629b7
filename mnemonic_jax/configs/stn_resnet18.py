"""The paper's STN setting: ImageNet-pretrained ResNet-18 fine-tuned with codes, 49 classes.

ResNet-18 (ImageNet stem) at 224x224, t_mix 0.1; SGD lr 0.01 momentum 0.9 weight decay
5e-4, batch 32, cosine schedule, crop+flip; forgetting with lambda1 = 1e-5, lambda2 = 100.
Published: A_R 91.7 +- 0.3, E_F 100, ~1.9 s to forget (GPU). The paper does not give the
number of epochs; 50 is our choice.

Data: the paper's 49-class STN dataset, resized to 224x224 and prepared as MNIST-format
idx files (``train-images-idx3-ubyte`` holding ``(N, 224, 224, 3)`` uint8, labels in
``train-labels-idx1-ubyte``, ``t10k-...`` for the test split) in the directory that
``dataset = "idx:<dir>"`` names, or as a tfds dataset with fixed-size images.

Pretrained weights: ``pretrained`` must point to a bundle directory
(:func:`mnemonic_jax.checkpointing.save_bundle`) or to an Orbax/msgpack file of
``resnet18`` params or variables (``{"params", "batch_stats"}``, as
:func:`mnemonic_jax.checkpointing.import_params` reads), trained on ImageNet; the layers
named in ``pretrained_skip`` (the 1000-way head) are initialised afresh for 49 classes.
:func:`mnemonic_jax.workflow.train` loads them before the first step
(``workflow.merge_pretrained``); without ``pretrained`` it starts from random weights.

Variants:
  ``quick``: width 8, 1 epoch, no pretrained weights: a CPU smoke run of the pipeline.
"""

import ml_collections

from mnemonic_jax.configs import ConfigError, paper_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = paper_config(
      "stn_resnet18", "idx:data/stn49_224", "resnet18", {"width": 64}, t_mix=0.1, epochs=50,
      batch_size=32, schedule="cosine", augment=True, lambda1=1e-05, lambda2=100.0,
      pretrained=ml_collections.FieldReference(None, field_type=str),
      pretrained_skip=("Dense_0",))
  if variant == "quick":
    config.model_kwargs.width = 8
    config.epochs = 1
    config.pretrained = None
  elif variant:
    raise ConfigError(f"unknown variant {variant!r}; use '' or 'quick'")
  return config
