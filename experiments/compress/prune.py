"""Pruning a torch model in place, by kind, amount, importance (L1/L2), scope and steps.

    kind            what goes                                   what a dense kernel gains
    unstructured    single weights of every conv, by magnitude    nothing: same shapes, zeros multiplied
    filter          whole k x k kernels W[f, c] (one input to        nothing on dense kernels (a sparse
                    one output channel), by their norm               GEMM can skip them: gemm=sparse)
    output_channel  whole output channels, carried through the    smaller GEMMs (about (1-a)^2 of the
                    dependency graph: the next layers' input          MACs where both sides shrink)
                    channels, the BatchNorms between, residual
                    coupling (Torch-Pruning's DependencyGraph)
    input_channel   the same physical removal (an input channel of a layer is an output channel of
                    its producer), ranked by the consuming layers' weight slices W[:, c]
    layer           whole residual blocks whose input and output   fewer layers
                    shapes match (identity shortcut), replaced by
                    nn.Identity

``amount`` is the fraction of the unit (weights, kernels, channels, blocks) to remove. ``scope``
layer prunes that fraction of every layer; global ranks all layers together (each layer's
importances divided by their mean, so layers of different fan-in compare; at most 90% of any
layer's channels go). ``steps`` > 1 reaches the amount in that many equal steps (each removes the
same fraction of what remains), with ``finetune(model)`` called after each step where given:
without fine-tuning between steps, magnitude pruning in steps selects what one shot would.
For single weights L1 and L2 rank alike (|w| either way); they differ for kernels, channels and
blocks. The classifier's outputs are never pruned.

``prune_model`` returns a PruneReport: the amount achieved, measured on the result (whole
channels are rounded, blocks are limited to the removable ones), and the dense and non-zero MACs
before and after (experiments.compress.macs): the MAC ratio that pruning tools report, to be set
beside the wall-clock speedup that the hardware delivers.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from experiments.conv.swap import forward_once

from .macs import ModelCount, count

KINDS = ("none", "unstructured", "output_channel", "input_channel", "filter", "layer")
IMPORTANCES = ("l1", "l2")
SCOPES = ("layer", "global")
UNITS = {"none": "", "unstructured": "weights", "filter": "kernels", "output_channel": "channels",
         "input_channel": "channels", "layer": "blocks"}
MAX_GLOBAL_CHANNEL_FRACTION = 0.9


@dataclass(frozen=True)
class PruneSpec:
    kind: str = "none"
    amount: float = 0.0
    importance: str = "l1"
    scope: str = "layer"
    steps: int = 1

    def __post_init__(self):
        def bad(what, value, valid):
            raise ValueError(f"prune.{what}={value!r} is not supported; valid: {valid}")
        if self.kind not in KINDS:
            bad("name", self.kind, ", ".join(KINDS))
        if self.importance not in IMPORTANCES:
            bad("importance", self.importance, ", ".join(IMPORTANCES))
        if self.scope not in SCOPES:
            bad("scope", self.scope, ", ".join(SCOPES))
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 1:
            bad("steps", self.steps, "a positive int")
        if not 0.0 <= float(self.amount) < 1.0 or (self.kind != "none" and float(self.amount) <= 0.0):
            bad("amount", self.amount, "the fraction to remove, 0 < amount < 1 (0 with prune=none)")

    @property
    def p(self) -> int:
        return 1 if self.importance == "l1" else 2


@dataclass
class PruneReport:
    spec: PruneSpec
    achieved: float                   # fraction of the unit removed (or zeroed), measured on the result
    unit: str                         # weights, kernels, channels, blocks
    before: ModelCount
    after: ModelCount
    removed: list[str] = field(default_factory=list)   # layer pruning: the blocks replaced by nn.Identity
    note: str = ""

    @property
    def mac_ratio(self) -> float:
        """Dense MACs of the original over non-zero MACs of the pruned model: what pruning tools report."""
        return self.before.macs / max(self.after.nonzero_macs, 1)

    @property
    def dense_mac_ratio(self) -> float:
        """Dense MACs before over dense MACs after: what physically smaller layers can deliver."""
        return self.before.macs / max(self.after.macs, 1)

    def describe(self) -> str:
        s = self.spec
        text = (f"{s.kind} {s.importance} {s.scope} amount {s.amount:g} in {s.steps} step(s): {self.achieved:.3f} "
                f"of the {self.unit} removed; MACs {self.before.macs / 1e6:.4g}M -> {self.after.macs / 1e6:.4g}M dense, "
                f"{self.after.nonzero_macs / 1e6:.4g}M non-zero (MAC ratio {self.mac_ratio:.3g})")
        return text + (f"; {self.note}" if self.note else "")


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def step_fractions(amount: float, steps: int) -> list[float]:
    """Per-step fractions of what remains, so that ``steps`` steps remove ``amount`` in all."""
    each = 1.0 - (1.0 - amount) ** (1.0 / steps)
    return [each] * steps


def prune_model(model: nn.Module, spec: PruneSpec, example: torch.Tensor,
                finetune: Callable[[nn.Module], None] | None = None) -> PruneReport:
    """Prune ``model`` (eval mode, float32) in place; ``example`` is an input batch of the right shape."""
    before = count(model, example)
    if spec.kind == "none":
        return PruneReport(spec, 0.0, "", before, before)
    handler = {"unstructured": _unstructured, "filter": _filter, "output_channel": _channels,
               "input_channel": _channels, "layer": _layers}[spec.kind]
    achieved, removed, note = handler(model, spec, example, finetune)
    model.eval()
    return PruneReport(spec, achieved, UNITS[spec.kind], before, count(model, example), removed, note)


# --- unstructured and filter (masks, made permanent) ------------------------------------------

def _finish_masks(convs, finetune, model, step_index, steps):
    if finetune is not None:
        finetune(model)
    if step_index == steps - 1:
        for _, conv in convs:
            torch_prune.remove(conv, "weight")


def _unstructured(model, spec: PruneSpec, example, finetune):
    convs = conv_layers(model)
    total = sum(conv.weight.numel() for _, conv in convs)
    for i, fraction in enumerate(step_fractions(spec.amount, spec.steps)):
        if spec.scope == "global":
            torch_prune.global_unstructured([(conv, "weight") for _, conv in convs],
                                            pruning_method=torch_prune.L1Unstructured, amount=fraction)
        else:
            for _, conv in convs:
                torch_prune.l1_unstructured(conv, "weight", amount=fraction)
        _finish_masks(convs, finetune, model, i, spec.steps)
    zeros = sum(int((conv.weight == 0).sum()) for _, conv in convs)
    return zeros / total, [], "L1 and L2 rank single weights alike" if spec.importance == "l2" else ""


def _kernel_norms(conv: nn.Conv2d, p: int) -> torch.Tensor:
    """Per-element p-norm of each k x k kernel W[f, c]: (mean |w|^p)^(1/p), F x C/G."""
    w = conv.weight.detach()
    return w.abs().pow(p).mean(dim=(2, 3)).pow(1.0 / p)


def _filter(model, spec: PruneSpec, example, finetune):
    convs = conv_layers(model)
    for i, fraction in enumerate(step_fractions(spec.amount, spec.steps)):
        masks = [_current_mask(conv)[:, :, 0, 0].bool() for _, conv in convs]
        scores = [_kernel_norms(conv, spec.p) for _, conv in convs]
        if spec.scope == "global":
            alive = torch.cat([s[m] for s, m in zip(scores, masks)])
            k = int(round(fraction * alive.numel()))
            threshold = torch.kthvalue(alive, k).values if k > 0 else None
            keep = [m & (s > threshold) if threshold is not None else m for s, m in zip(scores, masks)]
            keep = [_at_least_one(s, m, kept) for s, m, kept in zip(scores, masks, keep)]
        else:
            keep = [_drop_lowest(s, m, fraction) for s, m in zip(scores, masks)]
        for (_, conv), kept in zip(convs, keep):
            mask = kept[:, :, None, None].expand_as(conv.weight).to(conv.weight.dtype)
            torch_prune.custom_from_mask(conv, "weight", mask)
        _finish_masks(convs, finetune, model, i, spec.steps)
    kernels = sum(conv.weight.shape[0] * conv.weight.shape[1] for _, conv in convs)
    zero = sum(int((conv.weight.detach().abs().sum(dim=(2, 3)) == 0).sum()) for _, conv in convs)
    return zero / kernels, [], "kernels are zeroed: dense kernels still multiply them"


def _current_mask(conv: nn.Conv2d) -> torch.Tensor:
    mask = getattr(conv, "weight_mask", None)
    return mask if mask is not None else torch.ones_like(conv.weight)


def _drop_lowest(scores: torch.Tensor, alive: torch.Tensor, fraction: float) -> torch.Tensor:
    """alive, less round(fraction * alive) of its entries with the lowest scores."""
    k = int(round(fraction * int(alive.sum())))
    if k == 0:
        return alive.clone()
    ranked = torch.where(alive, scores, torch.full_like(scores, float("inf")))
    drop = torch.topk(ranked.flatten(), k, largest=False).indices
    keep = alive.clone().flatten()
    keep[drop] = False
    return keep.view_as(alive)


def _at_least_one(scores, alive, keep):
    """Global scope never empties a layer: its best kernel stays."""
    if keep.any() or not alive.any():
        return keep
    keep = keep.clone().flatten()
    keep[torch.where(alive.flatten(), scores.flatten(), torch.full_like(scores.flatten(), -1.0)).argmax()] = True
    return keep.view_as(alive)


# --- output and input channels (Torch-Pruning) -------------------------------------------------

class ChannelNormImportance:
    """Torch-Pruning importance of a group of coupled channels: the p-norm of the conv weights on one
    side of the channel, summed over the group's layers (residual coupling sums every conv that
    writes the channel), divided by the mean over the group's channels.

        side 'output'  W[f, :, :, :] of each conv that produces channel f
        side 'input'   W[:, c, :, :] of each conv (or linear) that consumes channel c
    """

    def __init__(self, p: int, side: str):
        self.p, self.side = p, side

    @torch.no_grad()
    def __call__(self, group):
        import torch_pruning as tp
        fn = tp.pruner.function
        total = None
        for i, (dep, idxs) in enumerate(group):
            layer, handler = dep.layer, dep.pruning_fn
            root = group[i].root_idxs
            if any(r is None for r in root):
                continue
            if self.side == "output" and handler == fn.prune_conv_out_channels and isinstance(layer, nn.Conv2d):
                w = layer.weight.detach()[idxs].flatten(1)
            elif self.side == "input" and handler == fn.prune_conv_in_channels and isinstance(layer, nn.Conv2d) \
                    and layer.groups == 1:
                w = layer.weight.detach()[:, idxs].transpose(0, 1).flatten(1)
            elif self.side == "input" and handler == fn.prune_linear_in_channels and isinstance(layer, nn.Linear):
                w = layer.weight.detach()[:, idxs].transpose(0, 1)
            else:
                continue
            part = w.abs().pow(self.p).sum(dim=1).float()
            if total is None:
                total = torch.zeros(len(group[0].idxs))
            total.scatter_add_(0, torch.tensor(root), part)
        if total is None:
            return None
        total = total.pow(1.0 / self.p)
        return total / total.mean() if total.mean() > 0 else total


def _classifier_layers(model: nn.Module) -> list[nn.Module]:
    """Layers whose outputs are the model's (never pruned): every nn.Linear, and a final 1x1 conv
    classifier (SqueezeNet's) if the model ends with one."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if linears:
        return linears
    convs = [m for _, m in conv_layers(model)]
    return convs[-1:]


def shuffle_branches(model: nn.Module) -> list[nn.Sequential]:
    """The second branches of ShuffleNetV2's blocks (torchvision). Channel shuffle interleaves the two
    branches' outputs with a view and a transpose that Torch-Pruning's dependency graph cannot follow
    (it fails building the graph), so such models are pruned branch by branch: the channels inside a
    branch (its first 1x1 conv's outputs and the depthwise conv's), never a block's output channels."""
    return [m.branch2 for m in model.modules()
            if hasattr(m, "branch1") and isinstance(getattr(m, "branch2", None), nn.Sequential)]


def _channels(model, spec: PruneSpec, example, finetune):
    import torch_pruning as tp
    side = "output" if spec.kind == "output_channel" else "input"
    convs = conv_layers(model)
    before = sum(conv.out_channels for _, conv in convs)
    branches = shuffle_branches(model)
    if branches:
        return _channels_by_branch(model, branches, spec, example, finetune, side, before)
    pruner = tp.pruner.MetaPruner(
        model, example[:1], importance=ChannelNormImportance(spec.p, side), pruning_ratio=spec.amount,
        global_pruning=spec.scope == "global", iterative_steps=spec.steps,
        max_pruning_ratio=max(MAX_GLOBAL_CHANNEL_FRACTION, spec.amount) if spec.scope == "global" else 1.0,
        ignored_layers=_classifier_layers(model))
    for _ in range(spec.steps):
        pruner.step()
        if finetune is not None:
            finetune(model)
    after = sum(conv.out_channels for _, conv in conv_layers(model))
    return 1.0 - after / before, [], ""


def _channels_by_branch(model, branches, spec: PruneSpec, example, finetune, side: str, before: int):
    """Channel pruning of shuffle_branches(model), each branch its own dependency graph traced on the
    input the model gives it; the branch's last conv (the block's output) is left whole."""
    import torch_pruning as tp
    inputs: dict[int, torch.Tensor] = {}
    forward_once(model, example[:1],
                 [branch.register_forward_pre_hook(lambda module, args, i=i: inputs.setdefault(i, args[0][:1].clone()))
                  for i, branch in enumerate(branches)])
    pruners = [tp.pruner.MetaPruner(branch, inputs[i], importance=ChannelNormImportance(spec.p, side),
                                    pruning_ratio=spec.amount, iterative_steps=spec.steps,
                                    ignored_layers=[m for m in branch.modules() if isinstance(m, nn.Conv2d)][-1:])
               for i, branch in enumerate(branches)]
    for _ in range(spec.steps):
        for pruner in pruners:
            pruner.step()
        if finetune is not None:
            finetune(model)
    after = sum(conv.out_channels for _, conv in conv_layers(model))
    note = (f"channel shuffle: only the channels inside the {len(branches)} blocks' second branches were pruned "
            f"(amount per branch{', scope per branch' if spec.scope == 'global' else ''}); block outputs, the "
            f"first branches, the stem and the last conv keep their channels")
    return 1.0 - after / before, [], note


# --- layers (residual blocks) ------------------------------------------------------------------

def residual_blocks(model: nn.Module) -> list[tuple[str, nn.Module, bool]]:
    """(name, block, removable) of each residual block: torchvision's BasicBlock and Bottleneck (ResNet,
    ResNeXt, Wide ResNet) and InvertedResidual (MobileNetV2/V3). Removable: an identity shortcut, so
    input and output shapes match and the block can become nn.Identity."""
    found = []
    for name, m in model.named_modules():
        kind = type(m).__name__
        if kind in ("BasicBlock", "Bottleneck") and hasattr(m, "downsample"):
            found.append((name, m, m.downsample is None))
        elif kind == "InvertedResidual" and hasattr(m, "use_res_connect"):
            found.append((name, m, bool(m.use_res_connect)))
    return found


def _block_importance(block: nn.Module, p: int) -> float:
    """How much a residual branch adds: per-element p-norm of its last conv's weights times the mean
    |gamma / sqrt(var + eps)| of the BatchNorm after it (where there is one)."""
    modules = list(block.modules())
    convs = [m for m in modules if isinstance(m, nn.Conv2d)]
    norms = [m for m in modules if isinstance(m, nn.BatchNorm2d)]
    last = convs[-1].weight.detach()
    score = float(last.abs().pow(p).mean().pow(1.0 / p))
    if norms:
        bn = norms[-1]
        gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(bn.running_var)
        score *= float((gamma.abs() / torch.sqrt(bn.running_var + bn.eps)).mean())
    return score


def _layers(model, spec: PruneSpec, example, finetune):
    blocks = residual_blocks(model)
    if not blocks:
        raise ValueError(f"prune=layer removes residual blocks, and {type(model).__name__} has none "
                         "(supported: torchvision BasicBlock, Bottleneck, InvertedResidual)")
    removable = [(name, block) for name, block, ok in blocks if ok]
    target = min(int(round(spec.amount * len(blocks))), len(removable))
    note = ""
    if int(round(spec.amount * len(blocks))) > len(removable):
        note = (f"only {len(removable)} of {len(blocks)} blocks have an identity shortcut: "
                f"{len(removable)} removed instead of {int(round(spec.amount * len(blocks)))}")
    removed: list[str] = []
    per_step = [target * (i + 1) // spec.steps - target * i // spec.steps for i in range(spec.steps)]
    for n in per_step:
        alive = [(name, block) for name, block in removable if name not in removed]
        ranked = sorted(alive, key=lambda nb: _block_importance(nb[1], spec.p))
        for name, _ in ranked[:n]:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, nn.Identity())
            removed.append(name)
        if finetune is not None and n:
            finetune(model)
    return len(removed) / len(blocks), removed, note
