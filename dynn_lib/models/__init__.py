"""VGG-16-BN, ResNet-56 and MobileNet (SDN code anchor) as SDNN (static CNN) or DyNN (early exits).

``build(arch, num_classes, input_size, exits)`` is the one entry point; see protocol section 3.
"""
from __future__ import annotations

from typing import Callable, Sequence

from torch import nn

from . import mobilenet, resnet, vgg
from . import base
from .base import Backbone, DyNN, ModelSpec, SDNN
from .heads import InternalClassifier, Normalize
from .macs import backbone_macs, exit_macs

__all__ = [
    "ARCHS", "INPUT_SIZES", "IMAGENET_MEAN", "IMAGENET_STD", "PROTOCOL_PARAM_COUNTS",
    "build", "count_trainable", "Backbone", "SDNN", "DyNN", "ModelSpec", "attach_exits",
    "InternalClassifier", "Normalize", "exit_macs", "backbone_macs",
]

ARCHS = ("vgg16", "resnet56", "mobilenet")
INPUT_SIZES = (32, 64)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Default normalisation: the ImageNet statistics the anchor used for CIFAR-10."""

_BACKBONES: dict[str, Callable[[ModelSpec, Normalize], Backbone]] = {
    "vgg16": vgg.vgg16_backbone,
    "resnet56": resnet.resnet56_backbone,
    "mobilenet": mobilenet.mobilenet_backbone,
}
_INITS: dict[str, Callable[[nn.Module, bool], None]] = {  # (model, exits): the anchor's init
    "vgg16": lambda m, exits: vgg.init_weights(m),
    "resnet56": lambda m, exits: resnet.init_weights(m, normal_linear=not exits),
    "mobilenet": lambda m, exits: None,  # torch defaults, as the anchor
}

PROTOCOL_PARAM_COUNTS: dict[tuple[str, int, bool], int] = {
    ("vgg16", 10, False): 15_253_578, ("vgg16", 100, False): 15_299_748,
    ("vgg16", 10, True): 15_468_683, ("vgg16", 100, True): 17_450_753,
    ("resnet56", 10, False): 855_770, ("resnet56", 100, False): 861_620,
    ("resnet56", 10, True): 891_676, ("resnet56", 100, True): 1_220_626,
    ("mobilenet", 10, False): 3_217_226, ("mobilenet", 100, False): 3_309_476,
    ("mobilenet", 10, True): 3_483_520, ("mobilenet", 100, True): 5_972_380,
}
"""Trainable parameters ``{(arch, num_classes, exits): count}`` of the protocol table (32x32 input)."""


def count_trainable(model: nn.Module) -> int:
    """Number of trainable (``requires_grad``) parameters; BatchNorm running buffers excluded."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build(arch: str, num_classes: int, input_size: int = 32, exits: bool = True,
          mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> SDNN | DyNN:
    """A freshly initialised model taking [0,1] pixels ``[B, 3, input_size, input_size]``.

    Args:
        arch: one of :data:`ARCHS`.
        num_classes: number of classes (>= 2).
        input_size: 32 (CIFAR) or 64 (Tiny ImageNet).
        exits: True for the DyNN (ICs at the SDN positions), False for the static SDNN.
        mean, std: per-channel normalisation applied by the model's first layer.
    Returns:
        ``DyNN`` (forward -> list of ``[B, C]`` logits, final last) or ``SDNN`` (-> ``[B, C]``).
    Weights follow the anchor's init for the architecture and model kind, IC heads included.
    """
    if arch not in _BACKBONES:
        raise ValueError(f"unknown arch {arch!r}; accepted: {', '.join(ARCHS)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if input_size not in INPUT_SIZES:
        raise ValueError(f"input_size must be one of {INPUT_SIZES}, got {input_size!r}")
    spec = ModelSpec(arch, num_classes, input_size)
    backbone = _BACKBONES[arch](spec, Normalize(mean, std))
    model = DyNN(backbone) if exits else SDNN(backbone)
    _INITS[arch](model, exits)
    return model


def attach_exits(cnn: SDNN) -> DyNN:
    """IC-only DyNN of a trained CNN (shares its backbone); the new IC heads start as the anchor's
    SDN of that architecture initialises them (VGG: linear layers N(0, 0.01), zero bias)."""
    dyn = base.attach_exits(cnn)
    init = _INITS.get(cnn.spec.arch)
    if init is not None:
        init(dyn.ics, True)
    return dyn
