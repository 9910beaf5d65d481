"""Class activation maps (CAM) and Grad-CAM of the trained visual models (docs/method.md §2).

CAM (Zhou et al. CVPR'16) needs the CAM variant of the network (:class:`DanCam`): trait
t's map is CAM_t = sum_k w_{k,t} A_k over the extra conv layer's maps A_k, and its
spatial mean plus the bias is the trait's logit. DAN+ (:class:`DanPlus`) has no such
head, so for it we compute Grad-CAM (Selvaraju et al. ICCV'17) at conv5_3: the same
weighted sum with weights alpha_{k,t} = mean over space of d logit_t / d A_k, then ReLU.
Comparing the two tells whether the CAM variant looks where the paper's model looks.

``cam/<source>.h5`` (source img | face | img_gradcam; its format:
:mod:`traitlens.interpret.cam_file`) holds the raw maps at the network's resolution with
the keys of the frames they came from; the figures (:mod:`traitlens.interpret.cam_figures`)
and the face-overlap table (:mod:`traitlens.interpret.cam_face_overlap`) upsample them to
the image.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from traitlens.core.errors import UserError
from traitlens.interpret.cam_file import write_cam_file
from traitlens.models.dan import TRAIT_ORDER, DanCam, DanPlus, _child_name
from traitlens.models.train import resolve_device
from traitlens.models.train_data import SampleIndex, build_index, sequential_plan
from traitlens.models.visual_model import RunConfig, load_trained, model_batches, on_device

log = logging.getLogger("traitlens.interpret.cam")


def _batches(model: DanPlus, kind: str, index: SampleIndex, batch_size: int, device, run):
    """(model input on device, positions) per batch, index order, no flips."""
    plan = sequential_plan(len(index), batch_size)
    batches = model_batches(kind, index, plan, model.cfg.input_size, device, run)
    for x, _, pos in tqdm(batches, total=len(plan), desc="maps", unit="batch"):
        yield x, pos.numpy()


def _empty_maps(n: int, model: DanPlus) -> np.ndarray:
    # four 2x2 poolings before conv5_x (three for a CAM model with cam_map_stride 8)
    stride = model.cfg.cam_map_stride if isinstance(model, DanCam) else 16
    side = model.cfg.input_size // stride
    return np.zeros((n, len(TRAIT_ORDER), side, side), dtype=np.float32)


def cam_for_index(
    model: DanCam,
    kind: str,
    index: SampleIndex,
    batch_size: int,
    device: torch.device,
    run: RunConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """(maps float32 (N, 5, h, w), predictions float32 (N, 5)) in index order.

    Eval mode, no gradients, float32 throughout (no autocast): the maps are stored and
    their means must still add up to the logits."""
    if not isinstance(model, DanCam):
        raise TypeError("cam_for_index needs a DanCam (a model trained with head: cam)")
    model = on_device(model, device).eval()
    maps, pred = None, np.zeros((len(index), len(TRAIT_ORDER)), np.float32)
    with torch.no_grad():
        for x, pos in _batches(model, kind, index, batch_size, device, run):
            cams, p = model.class_activation_maps(x)
            if maps is None:
                maps = np.zeros((len(index), *cams.shape[1:]), np.float32)
            maps[pos], pred[pos] = cams.float().cpu().numpy(), p.float().cpu().numpy()
    return (maps if maps is not None else _empty_maps(0, model)), pred


def logits(model: DanPlus, x: torch.Tensor) -> torch.Tensor:
    """The outputs before the sigmoid, N x 5 (DanPlus or DanCam)."""
    if isinstance(model, DanCam):
        return model.head(model.cam_features(x).mean(dim=(2, 3)))
    return model.head(model.pooled(x))


def gradcam_batch(
    model: DanPlus, x: torch.Tensor, layer: str = "conv5_3"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Grad-CAM of one batch: (maps N x 5 x h x w, alpha N x 5 x K, A N x K x h x w,
    predictions N x 5), all detached.

    A forward hook on the backbone child that outputs ``layer`` replaces its output by
    a detached copy that requires grad, so the gradient of each trait's logit (before
    the sigmoid: the sigmoid's slope would only rescale alpha per frame) stops at A; the
    layers before A run without recording a graph. The model's own forward
    (``pooled`` / ``cam_features``) is used unchanged: DAN+'s backbone.run goes on from
    relu5_3 to pool5, so conv5_3 reaches the head through pool5. Frames are independent
    in eval mode, so the gradient of the batch sum is every frame's own gradient.
    """
    child = _child_name(layer)
    modules = dict(model.backbone.named_children())
    if child not in modules:
        raise ValueError(f"no backbone layer {layer!r} (children: {list(modules)})")
    captured: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        leaf = output.detach().requires_grad_(True)
        captured.append(leaf)
        # from here on record the graph: the layers before A ran without one (no memory
        # kept for a backward pass that never goes there)
        torch.set_grad_enabled(True)
        return leaf

    handle = modules[child].register_forward_hook(keep)
    try:
        with torch.no_grad():  # restores the caller's grad mode on exit
            z = logits(model, x)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise RuntimeError(f"layer {layer!r} ran {len(captured)} times in one forward pass")
    a = captured[0]
    grads = []
    for t in range(z.shape[1]):
        (g,) = torch.autograd.grad(z[:, t].sum(), a, retain_graph=t < z.shape[1] - 1)
        grads.append(g.mean(dim=(2, 3)))
    alpha = torch.stack(grads, dim=1)  # N x T x K
    a = a.detach()
    maps = torch.relu(torch.einsum("ntk,nkhw->nthw", alpha, a))
    return maps, alpha, a, torch.sigmoid(z.detach())


def gradcam_for_index(
    model: DanPlus,
    kind: str,
    index: SampleIndex,
    batch_size: int,
    device: torch.device,
    run: RunConfig,
    layer: str = "conv5_3",
) -> tuple[np.ndarray, np.ndarray]:
    """(Grad-CAM maps float32 (N, 5, h, w), predictions float32 (N, 5)) in index order;
    see :func:`gradcam_batch` (gradients of the pre-sigmoid logits, float32, eval mode)."""
    model = on_device(model, device).eval()
    maps, pred = None, np.zeros((len(index), len(TRAIT_ORDER)), np.float32)
    for x, pos in _batches(model, kind, index, batch_size, device, run):
        m, _, _, p = gradcam_batch(model, x, layer)
        if maps is None:
            maps = np.zeros((len(index), *m.shape[1:]), np.float32)
        maps[pos], pred[pos] = m.float().cpu().numpy(), p.float().cpu().numpy()
    return (maps if maps is not None else _empty_maps(0, model)), pred


# --- what the entry scripts run -------------------------------------------------------

METHODS = ("cam", "gradcam")


def compute_cam_file(
    source: str,
    method: str,
    weights: str | Path,
    labels: pd.DataFrame,
    data: Sequence[str],
    split: str,
    batch_size: int,
    run: RunConfig,
    out: str | Path,
    layer: str = "conv5_3",
) -> int:
    """Maps of the ``split`` frames of ``data`` by the model in ``weights`` (method cam:
    its CAM, which needs a CAM-variant model; gradcam: Grad-CAM at ``layer``) written to
    ``out``; returns the number of frames."""
    if method not in METHODS:
        raise UserError(f"compute_cam for {source}: method {method!r}; expected one of {METHODS}")
    model, kind = load_trained(weights)
    if method == "cam" and not isinstance(model, DanCam):
        raise UserError(
            f"{weights}: not a CAM-variant model (it was trained with head: "
            f"{model.cfg.head}; CAM needs head: cam). The train_visual rule builds the CAM "
            "variants as models/img_cam and models/face_cam (config models.img_cam, "
            "models.face_cam); for a DAN+ model use Grad-CAM (method gradcam)"
        )
    index = build_index(kind, data, labels)
    index = index.subset(index.split == split)
    if len(index) == 0:
        raise UserError(
            f"no {kind} samples of the '{split}' split in {len(data)} shard file(s) for "
            f"{out}; check config analysis.cam.split and the QC tables (every frame of "
            "that split may have failed)"
        )
    device = resolve_device(run.device)
    torch.set_num_threads(max(1, run.threads))
    log.info(
        "%s of %s: %d %s frames (%s split) on %s", method, weights, len(index), kind, split, device
    )
    if method == "cam":
        maps, pred = cam_for_index(model, kind, index, batch_size, device, run)
        layer = "cam_conv"
    else:
        maps, pred = gradcam_for_index(model, kind, index, batch_size, device, run, layer)
    write_cam_file(
        out, source, method, layer, kind, model.cfg.input_size, split, index, maps, pred,
        traits=TRAIT_ORDER,
        created_by=f"traitlens.interpret.cam with torch {torch.__version__}",
    )  # fmt: skip
    return len(index)
