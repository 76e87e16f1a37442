"""Model package: backbone registry, model building, transfer learning, model cards.

Importing it registers the custom layer (``BackbonePreprocess``) for ``keras.saving``.
"""
from training.models.build import (
    backbone_layers,
    build_model,
    count_params,
    set_backbone_trainable,
    split_feature_head,
    unfreeze_backbone,
)
from training.models.card import load_model, save_model, update_card, validate_card
from training.models.layers import BackbonePreprocess
from training.models.registry import ARCHITECTURES, FOUR, Architecture, get_architecture

__all__ = [
    "ARCHITECTURES", "FOUR", "Architecture", "BackbonePreprocess", "backbone_layers",
    "build_model", "count_params", "get_architecture", "load_model", "save_model",
    "set_backbone_trainable", "split_feature_head", "unfreeze_backbone", "update_card",
    "validate_card",
]
