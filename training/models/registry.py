"""The backbone registry: adding a backbone is one ``Architecture`` entry below."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras

from training.errors import CXRError


@dataclass(frozen=True)
class Architecture:
    """A ``keras.applications`` backbone and what cxrlab needs to know about it."""

    name: str
    #: ``keras.applications`` constructor (``include_top``, ``weights``, ``input_tensor``).
    constructor: Callable[..., keras.Model]
    #: default (ImageNet) input size in pixels, square
    input_size: int
    #: :class:`training.models.layers.BackbonePreprocess` mode
    preprocess_mode: str
    #: last convolutional feature map (4-D), used by Grad-CAM
    gradcam_layer: str
    #: the no-top ImageNet weights file Keras downloads into ``~/.keras/models/``
    weights_file: str
    #: smallest input size the constructor accepts
    min_input_size: int = 32
    #: a shallower map Grad-CAM explains where ``gradcam_layer``'s is 1×1 at the input size
    #: (one cell cannot localise anything): InceptionV3 below 139 px (mixed7: 4×4 at 96 px)
    gradcam_fallback: str | None = None
    #: from-scratch recipe: peak learning rate (AdamW, warm-up + cosine). 1e-3 trains every
    #: BatchNorm backbone; VGG16 (no BatchNorm) stays at chance there and needs 1e-4
    #: (docs/results.md, "The from-scratch recipe").
    scratch_lr: float = 1e-3

    def gradcam_layer_for(self, model: keras.Model) -> str:
        """The layer Grad-CAM explains in ``model`` (built from this backbone; the card records
        it): ``gradcam_layer``, or ``gradcam_fallback`` where that map is 1×1 at this input size."""
        shape = model.get_layer(self.gradcam_layer).output.shape
        if self.gradcam_fallback and tuple(shape[1:3]) == (1, 1):
            return self.gradcam_fallback
        return self.gradcam_layer


_A = keras.applications

ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("resnet50", _A.ResNet50, 224, "caffe", "conv5_block3_out",
                     "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        Architecture("inception_v3", _A.InceptionV3, 299, "tf", "mixed10",
                     "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5", 75,
                     gradcam_fallback="mixed7"),
        Architecture("xception", _A.Xception, 299, "tf", "block14_sepconv2_act",
                     "xception_weights_tf_dim_ordering_tf_kernels_notop.h5", 71),
        Architecture("vgg16", _A.VGG16, 224, "caffe", "block5_conv3",
                     "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", scratch_lr=1e-4),
        Architecture("densenet121", _A.DenseNet121, 224, "torch", "relu",
                     "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        Architecture("efficientnet_b0", _A.EfficientNetB0, 224, "none", "top_activation",
                     "efficientnetb0_notop.h5"),
    )
}

#: the four backbones compared side by side in the original study
FOUR = ("resnet50", "inception_v3", "xception", "vgg16")


def get_architecture(name: str) -> Architecture:
    """The architecture called ``name``; a clear error listing the known ones otherwise."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise CXRError(
            f"unknown architecture {name!r}; choose one of: {', '.join(ARCHITECTURES)}"
        ) from None
