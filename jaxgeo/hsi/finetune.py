"""Downstream tasks: patch classification and per-pixel segmentation on a pretrained backbone.

Tasks (labels from the patch store, -1 = unlabeled and ignored):

- ``landcover_patch``: one land-cover class per patch (its majority class); the head sees the
  pooled embedding.
- ``landcover`` and ``croptype``: a class per pixel; the head sees the backbone's feature map
  and its logits are upsampled bilinearly to the patch size.

Modes:

- ``linear``: the backbone frozen (running batch statistics, no gradient), a linear head
  (a linear layer, or a 1x1 convolution for segmentation);
- ``frozen``: the backbone frozen, a non-linear head (an MLP, or a light FCN for segmentation);
- ``full``: everything trained, with the ``frozen`` heads.

Metrics, all from one confusion matrix ``C[true, predicted]`` pooled over every labeled pixel
(or patch) of the test split, with ``TP_c = C[c, c]``, ``FP_c = sum_t C[t, c] - TP_c``,
``FN_c = sum_p C[c, p] - TP_c``:

- ``accuracy = sum_c TP_c / sum C``;
- ``iou_c = TP_c / (TP_c + FP_c + FN_c)`` per class (``per_class_iou``; NaN for a class absent
  from both truth and prediction);
- ``miou_micro = sum_c TP_c / sum_c (TP_c + FP_c + FN_c)`` (torchmetrics'
  ``JaccardIndex(average="micro")``, what SpectralEarth's reference code reports; for
  single-label predictions it equals ``accuracy / (2 - accuracy)``);
- ``miou_macro`` = the mean of ``iou_c`` over the classes present in truth or prediction
  (``average="macro"``): every class counts the same, however rare.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array, Float, Int

from jaxgeo.nn import FCNHead, LinearHead, LinearSegHead, MLPHead
from jaxgeo.train import ModuleDef

from .backbones import Backbone

__all__ = [
    "MODES",
    "TASKS",
    "TaskModel",
    "confusion_matrix",
    "make_finetune_loss",
    "make_predict",
    "masked_cross_entropy",
    "metrics_from_confusion",
    "split_trainable",
]

MODES: tuple[str, ...] = ("linear", "frozen", "full")
TASKS: tuple[str, ...] = ("landcover", "croptype", "landcover_patch")
PyTree = Any


def is_segmentation(task: str) -> bool:
    return task != "landcover_patch"


class TaskModel(nnx.Module):
    """A backbone with a task head.

    Args:
        backbone: The encoder.
        task: One of :data:`TASKS`.
        mode: One of :data:`MODES` (chooses the head; freezing is done by the training loss).
        n_classes: Output classes.
        rngs: Initialisation randomness of the head.
    """

    def __init__(
        self, backbone: Backbone, task: str, mode: str, n_classes: int, *, rngs: nnx.Rngs
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        self.backbone = backbone
        self.task = task
        self.mode = mode
        d = backbone.out_features
        self.head: LinearHead | MLPHead | LinearSegHead | FCNHead
        if is_segmentation(task):
            self.head = (
                LinearSegHead(d, n_classes, rngs=rngs)
                if mode == "linear"
                else (FCNHead(d, n_classes, hidden=min(256, 2 * d), rngs=rngs))
            )
        else:
            self.head = (
                LinearHead(d, n_classes, rngs=rngs)
                if mode == "linear"
                else (MLPHead(d, n_classes, hidden=min(512, 2 * d), rngs=rngs))
            )

    def __call__(
        self, x: Float[Array, "b h w bands"], *, train: bool = False, train_backbone: bool = False
    ) -> Array:
        """Logits ``(b, k)`` (classification) or ``(b, H, W, k)`` (segmentation)."""
        tb = train and train_backbone
        head = self.head
        if isinstance(head, LinearSegHead | FCNHead):
            f = self.backbone.feature_map(x, train=tb)
            if not train_backbone:
                f = jax.lax.stop_gradient(f)
            return head(f, x.shape[1], x.shape[2], train=train)
        z = self.backbone(x, train=tb)
        if not train_backbone:
            z = jax.lax.stop_gradient(z)
        return head(z, train=train)


def masked_cross_entropy(
    logits: Float[Array, "*n k"], labels: Int[Array, "*n"]
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """Mean cross-entropy over labeled entries (label >= 0), and their count."""
    valid = labels >= 0
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(valid, labels, 0))
    w = valid.astype(logits.dtype)
    count = jnp.sum(w)
    return jnp.sum(ce * w) / jnp.maximum(count, 1.0), count


def split_trainable(params: PyTree, mode: str) -> tuple[PyTree, PyTree]:
    """``(trained, fixed)`` parts of a :class:`TaskModel`'s parameter dict for ``mode``."""
    if mode == "full":
        return params, {}
    return {"head": params["head"]}, {"backbone": params["backbone"]}


def make_finetune_loss(mdef: ModuleDef, mode: str) -> Callable:
    """``loss(trained, state, batch, key) -> (loss, (state, metrics))`` for
    :func:`jaxgeo.train.make_train_step`; ``state = {"fixed": ..., "rest": ...}``."""
    train_backbone = mode == "full"

    def loss_fn(trained, state, batch, key):
        del key
        params = {**state["fixed"], **trained}
        model = mdef.merge(params, state["rest"])
        logits = model(batch["x"], train=True, train_backbone=train_backbone)
        loss, _ = masked_cross_entropy(logits, batch["y"])
        y = batch["y"]
        valid = y >= 0
        hits = jnp.sum((jnp.argmax(logits, axis=-1).astype(y.dtype) == y) & valid)
        acc = hits.astype(loss.dtype) / jnp.maximum(jnp.sum(valid), 1).astype(loss.dtype)
        return loss, ({**state, "rest": mdef.rest(model)}, {"accuracy": acc})

    return loss_fn


def make_predict(mdef: ModuleDef) -> Callable:
    """``predict(params, rest, x) -> class indices`` (eval mode)."""

    def predict(params, rest, x):
        return jnp.argmax(mdef.merge(params, rest)(x), axis=-1).astype(jnp.int32)

    return predict


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``C[t, p]``: counts of labeled entries (``y_true >= 0``) of class t predicted as p."""
    t = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    keep = t >= 0
    return np.bincount(
        t[keep].astype(np.int64) * n_classes + p[keep].astype(np.int64), minlength=n_classes**2
    ).reshape(n_classes, n_classes)


def metrics_from_confusion(conf: np.ndarray) -> dict[str, Any]:
    """Accuracy, micro and macro mIoU and per-class IoU (definitions in the module docstring)."""
    conf = np.asarray(conf, np.float64)
    tp = np.diag(conf)
    fp = conf.sum(axis=0) - tp
    fn = conf.sum(axis=1) - tp
    union = tp + fp + fn
    total = conf.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    present = union > 0
    return {
        "accuracy": float(tp.sum() / total) if total else float("nan"),
        "miou_micro": float(tp.sum() / union.sum()) if union.sum() else float("nan"),
        "miou_macro": float(np.mean(iou[present])) if present.any() else float("nan"),
        "per_class_iou": [None if np.isnan(v) else float(v) for v in iou],
        "n_labeled": int(total),
    }


@dataclasses.dataclass(frozen=True)
class FinetuneSettings:
    """Optimisation settings of a downstream run."""

    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 5
    seed: int = 0
