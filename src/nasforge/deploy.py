"""An inference-only copy of any nasforge network: BatchNorm folded, training-only modules gone.

`deploy(model, example_input)` returns a module that is called exactly like `model` and gives the
same outputs as `model.eval()` (to float rounding, about 1e-6 relative), faster. It works on a deep
copy of the module tree, so the original is never touched, and needs no tracing: every network
nasforge builds (NASNet cells pass lists of states around, NB201 cells loop over their edges,
layer-wise networks pad and concatenate) deploys the same way, and the result still scripts,
traces and exports with `torch.export` like the original.

What the transformation does, in order:

1. **Auxiliary heads are dropped** (a network with ``forward_with_aux`` and an ``aux`` module, as
   NASNet's): they only ever run in training.
2. **Training-only modules become identities and then disappear**: ``nn.Dropout`` (all variants)
   and drop path / stochastic depth (`nasforge.nn.layers.DropPath`) are identities in eval mode;
   identities inside ``nn.Sequential`` containers are removed, nested plain ``Sequential``s are
   flattened into their parent, and NASNet's per-op wrapper (op + drop path) is replaced by the op.
3. **BatchNorm is folded into the convolution before it** (Ioffe & Szegedy 2015 give eval-mode BN
   as a per-channel affine map ``y = (x - mean) / sqrt(var + eps) * gamma + beta``; applied to a
   convolution's output it is the same convolution with its output channels' filters scaled by
   ``gamma / sqrt(var + eps)`` and a new bias). This holds for every conv feeding the BN directly,
   grouped and depthwise ones included, and for the factorized reduction whose BN follows the
   concatenation of two 1x1 convs (each conv takes its half of the BN). A BN with no conv right
   before it (NB201's final BN after a sum of cells) is kept as it is.
4. **Dead branches are pruned**: a NASNet cell input that no block and no output reads keeps no
   preprocessing conv; an NB201 edge whose target node never reaches the cell output is removed.
5. **Activations right after a conv run in place** (the conv's output has no other reader): on
   CPUs every new large tensor costs fresh pages from the kernel, often as much as the
   elementwise pass itself. (MBConv blocks themselves already write their squeeze-and-excitation
   product and residual sum in place whenever no gradient is recorded.)
6. **On CPU, conv + activation run as one oneDNN convolution** with the activation as a post-op
   (the primitive PyTorch's inductor emits for the same pattern), saving a pass over the
   activation map; the module falls back to the plain conv and activation whenever it is
   scripted, traced, exported or compiled, or sees a tensor that is not a plain CPU float32 one,
   so exports hold standard operators only. A NASNet block's sum runs the same way, as the
   binary post-op of the conv that ends one of its two ops.
7. **NASNet's shared ReLUs are computed once.** Every separable conv and every cell's
   preprocessing starts with a ReLU of its input, and several of them read the same state (in
   NASNet-A's normal cell three ops read h_{i-1}; every cell output is read by the next two
   cells and the head, all through a ReLU): the deployed cells compute each state's ReLU once
   and hand it to every op that starts with one (TF slim's `nasnet_utils.py` applies the ReLUs
   per op, as the eager network does). A cell whose output no reader takes without its ReLU
   writes that output ReLU'd, concatenation and ReLU in one pass.
8. **Memory format**: with ``channels_last`` (the default on CPU) the 4-D weights are stored NHWC,
   which oneDNN's CPU convolutions prefer; a contiguous input is converted by the first conv
   itself, so callers pass the same tensors as before.
9. Optionally ``torch.compile`` (inductor, with weight freezing): the compiled module is warmed up
   on `example_input`, so the first real call does not pay the compile time; that time is kept in
   the report (`deploy_report(module).compile_seconds`).

The idea is the same as timm's ``fuse_bn`` / reparameterisation helpers and PyTorch's
``torch.fx.experimental.optimization.fuse``, written here over nasforge's own blocks so that it
needs no symbolic trace.
"""

from __future__ import annotations

import copy
import sys
import time
import types
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard, cast

import torch
from torch import nn

from nasforge.models.nasnet import NASNet, NASNetCell, _Block, _Half
from nasforge.nn.layers import ConvBNSequential, DropPath, FactorizedReduce, plain_cpu_map
from nasforge.nn.ops import SepConv

__all__ = ["ConvAct", "ConvAdd", "DeployReport", "deploy", "deploy_report", "fold_conv_bn"]

#: Dropout modules: identities in eval mode.
_DROPOUTS: tuple[type[nn.Module], ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
#: Activations that may run in place on a conv's (or a BN's) fresh output.
_INPLACE_ACTS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.SiLU,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Mish,
    nn.ELU,
    nn.LeakyReLU,
)
#: The attribute under which the report rides on the deployed module.
_REPORT_ATTR = "_nasforge_deploy_report"


@dataclass
class DeployReport:
    """What `deploy` changed; `deploy_report(module)` reads it back."""

    folded_bn: int = 0  # BatchNorm layers folded into a convolution
    kept_bn: int = 0  # BatchNorm layers left (nothing to fold them into)
    removed: int = 0  # identity, dropout, drop path and wrapper modules removed
    pruned: int = 0  # dead branches (unused cell inputs, NB201 edges) removed
    aux_heads: int = 0  # auxiliary classifiers dropped
    inplace_acts: int = 0  # activations switched to in place
    fused_conv_act: int = 0  # conv + activation pairs run as one oneDNN primitive on CPU
    shared_relus: int = 0  # ReLU passes saved by computing a shared input's ReLU once
    fused_conv_add: int = 0  # NASNet sums run as their last conv's oneDNN post-op on CPU
    channels_last: bool = False
    compiled: bool = False
    compile_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def deploy_report(module: nn.Module) -> DeployReport | None:
    """The `DeployReport` of a module `deploy` returned (None for any other module)."""
    inner = getattr(module, "_orig_mod", module)  # a torch.compile wrapper
    return inner.__dict__.get(_REPORT_ATTR)


# -- folding ----------------------------------------------------------------------------------------
def _foldable_bn(bn: object) -> TypeGuard[nn.modules.batchnorm._BatchNorm]:
    """Eval-mode BN is affine only when it normalises with running statistics."""
    return (
        isinstance(bn, nn.modules.batchnorm._BatchNorm)
        and type(bn).forward in (nn.BatchNorm2d.forward, nn.SyncBatchNorm.forward)
        and bn.track_running_stats
        and bn.running_mean is not None
        and bn.running_var is not None
    )


def _plain_conv(conv: object) -> TypeGuard[nn.Conv2d]:
    """A Conv2d whose forward is PyTorch's (a subclass with its own forward may not be linear)."""
    return isinstance(conv, nn.Conv2d) and type(conv).forward is nn.Conv2d.forward


def _bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with bn(x) = x * scale + shift per channel, in float64 for the folding."""
    if bn.running_var is None or bn.running_mean is None:
        raise ValueError("a BatchNorm without running statistics cannot be folded")
    var = bn.running_var.detach().double()
    mean = bn.running_mean.detach().double()
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach().double()
    shift = -mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach().double()
    return scale, shift


def fold_conv_bn(conv: nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm, channels: slice | None = None) -> None:
    """Fold eval-mode `bn` (or its `channels` slice) into `conv` in place: conv(x) then becomes
    bn(conv(x)). The weights are rescaled per output channel, so grouped and depthwise convs fold
    the same way; the conv gains a bias if it had none."""
    scale, shift = _bn_affine(bn)
    if channels is not None:
        scale, shift = scale[channels], shift[channels]
    if scale.numel() != conv.out_channels:
        raise ValueError(f"BatchNorm of {scale.numel()} channels after a conv of {conv.out_channels}")
    weight = conv.weight.detach()
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(shift)
    new_weight = (weight.double() * scale.view(-1, *([1] * (weight.dim() - 1)))).to(weight.dtype)
    new_bias = (bias * scale + shift).to(weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(new_weight)
        if conv.bias is None:
            conv.bias = nn.Parameter(new_bias.to(weight.device), requires_grad=conv.weight.requires_grad)
        else:
            conv.bias.copy_(new_bias)


def _fold_sequential(seq: nn.Sequential, report: DeployReport) -> None:
    """Fold every (conv, BN) pair of adjacent children; the BN becomes an identity."""
    keys = list(seq._modules)
    for prev_key, key in zip(keys, keys[1:]):
        prev, cur = seq._modules[prev_key], seq._modules[key]
        if _foldable_bn(cur) and _plain_conv(prev) and prev.out_channels == cur.num_features:
            fold_conv_bn(prev, cur)
            seq._modules[key] = nn.Identity()
            report.folded_bn += 1


def _fold_factorized_reduce(module: nn.Module, report: DeployReport) -> None:
    """FactorizedReduce: BN(cat(path1(x), path2(x'))) -- each path takes its half of the BN."""
    bn, p1, p2 = module.bn, module.path1, module.path2
    if not (
        _foldable_bn(bn)
        and _plain_conv(p1)
        and _plain_conv(p2)
        and p1.out_channels + p2.out_channels == bn.num_features
    ):
        return
    fold_conv_bn(p1, bn, slice(0, p1.out_channels))
    fold_conv_bn(p2, bn, slice(p1.out_channels, bn.num_features))
    module.bn = nn.Identity()
    report.folded_bn += 1


# -- simplifying ---------------------------------------------------------------------------------------
def _is_plain_sequential(m: object) -> TypeGuard[nn.Sequential]:
    return isinstance(m, nn.Sequential) and type(m).forward in (nn.Sequential.forward, ConvBNSequential.forward)


def _set_children(seq: nn.Sequential, children: list[nn.Module]) -> None:
    """Make `children` the Sequential's modules, keyed 0, 1, ... as Sequential itself keys them."""
    seq._modules.clear()
    for i, child in enumerate(children):
        seq._modules[str(i)] = child


def _replace_training_only(root: nn.Module, report: DeployReport) -> None:
    """Dropout and drop path -> nn.Identity; auxiliary heads -> None."""
    for module in list(root.modules()):
        if callable(getattr(module, "forward_with_aux", None)) and isinstance(getattr(module, "aux", None), nn.Module):
            module.aux = None  # type: ignore[assignment]  # torch's stub: Module.__setattr__ takes any value
            report.aux_heads += 1
        for name, child in list(module._modules.items()):
            if child is not None and (isinstance(child, _DROPOUTS) or type(child) is DropPath):
                module._modules[name] = nn.Identity()


def _unwrap_known(root: nn.Module, report: DeployReport) -> None:
    """Replace wrappers whose forward is their only child's once the rest is an identity.

    Unwrapped, a stacked separable conv becomes one flat Sequential, so its middle ReLU meets
    the pointwise conv before it and can run as that conv's post-op."""
    for module in list(root.modules()):
        for name, child in list(module._modules.items()):
            if type(child) is _Half and isinstance(child.drop, nn.Identity):
                module._modules[name] = child.op  # _Half(x) = drop(op(x)) = op(x)
                report.removed += 1
            elif type(child) is SepConv:
                module._modules[name] = child.op  # SepConv(x) = op(x)
                report.removed += 1


def _simplify_sequentials(root: nn.Module, report: DeployReport) -> None:
    """Inside plain Sequentials: splice nested plain Sequentials, drop identities."""
    for module in list(root.modules()):
        if not _is_plain_sequential(module):
            continue
        flat: list[nn.Module] = []
        stack = list(module._modules.values())[::-1]
        while stack:
            child = stack.pop()
            if child is None:
                continue
            if _is_plain_sequential(child):
                stack.extend(list(child._modules.values())[::-1])
                report.removed += 1
            elif type(child) is nn.Identity:
                report.removed += 1
            else:
                flat.append(child)
        _set_children(module, flat)


def _prune_dead_branches(root: nn.Module, report: DeployReport) -> None:
    from nasforge.models.nb201 import NB201CellModule

    for module in list(root.modules()):
        if type(module) is NASNetCell:
            read = {b.input_a for b in module.blocks} | {b.input_b for b in module.blocks}
            read |= {tap.state for tap in module.taps}
            for state, attr in ((0, "preprocess0"), (1, "preprocess1")):
                if state not in read and type(getattr(module, attr)) is not nn.Identity:
                    setattr(module, attr, nn.Identity())  # its output is never read
                    report.pruned += 1
        elif type(module) is NB201CellModule:
            live = {3}  # nodes whose value reaches the cell output (node 3)
            for node in (2, 1):
                if any(e.src == node and e.dst in live for e in module.edges):
                    live.add(node)
            kept = [e for e in module.edges if e.dst in live]
            if len(kept) != len(module.edges):
                report.pruned += len(module.edges) - len(kept)
                module.edges = nn.ModuleList(kept)


class _InplaceAct(Protocol):
    """The activations of `_INPLACE_ACTS`: each has an ``inplace`` flag."""

    inplace: bool


def _inplace_activations(root: nn.Module, report: DeployReport) -> None:
    """An activation right after a conv/BN/linear in a Sequential owns its input: run it in place."""
    producers = (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm)
    for module in list(root.modules()):
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module._modules.values())
        for prev, cur in zip(children, children[1:]):
            if (
                isinstance(prev, producers)
                and type(cur) in _INPLACE_ACTS
                and hasattr(cur, "inplace")
                and not cur.inplace
            ):
                cast(_InplaceAct, cur).inplace = True
                report.inplace_acts += 1


#: Activation module -> oneDNN post-op name of ``mkldnn::_convolution_pointwise``.
_POST_OPS: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.SiLU: "swish",
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.Hardswish: "hardswish",
}


def _pointwise_conv_available() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
    except (AttributeError, RuntimeError):
        return False


def _plain_eager_call(x: torch.Tensor) -> bool:
    """Whether a call may take the oneDNN path: a plain CPU float32 tensor, outside any tracer."""
    return plain_cpu_map(x) and x.dtype == torch.float32 and not x.requires_grad


def _onednn_conv(
    conv: nn.Conv2d, x: torch.Tensor, post_op: str = "none", other: torch.Tensor | None = None
) -> torch.Tensor:
    """`conv(x)` as one oneDNN primitive, then `post_op` (an activation) or ``+ other``."""
    geometry = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
    if other is None:
        return torch.ops.mkldnn._convolution_pointwise(x, conv.weight, conv.bias, *geometry, post_op, [], "")
    return torch.ops.mkldnn._convolution_pointwise.binary(
        x, other, conv.weight, conv.bias, *geometry, "add", None, None, [], None
    )


class ConvAct(nn.Module):
    """``act(conv(x))``; on CPU one oneDNN convolution with `act` as its post-op.

    Same maths as the two modules (the post-op applies the activation to each output element as it
    is written); `conv` and `act` stay children, so the generic path and the weights are those of
    the original modules.
    """

    def __init__(self, conv: nn.Conv2d, act: nn.Module, post_op: str):
        super().__init__()
        self.conv = conv
        self.act = act
        self.post_op = post_op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if _plain_eager_call(x):
                return _onednn_conv(self.conv, x, post_op=self.post_op)
        return self.act(self.conv(x))


def _fuse_conv_act(root: nn.Module, report: DeployReport) -> None:
    """(Conv2d, activation) neighbours of a Sequential -> one `ConvAct`."""
    for module in list(root.modules()):
        if not _is_plain_sequential(module):
            continue
        children = list(module)
        fused: list[nn.Module] = []
        i = 0
        while i < len(children):
            conv, act = children[i], children[i + 1] if i + 1 < len(children) else None
            if (
                act is not None
                and _plain_conv(conv)
                and type(act) in _POST_OPS
                and conv.padding_mode == "zeros"
                and not isinstance(conv.padding, str)
            ):
                fused.append(ConvAct(conv, act, _POST_OPS[type(act)]))
                report.fused_conv_act += 1
                i += 2
            else:
                fused.append(conv)
                i += 1
        if len(fused) != len(children):
            _set_children(module, fused)


def _strip_leading_relu(owner: nn.Module, attr: str) -> bool:
    """Remove the ReLU an op applies to its input first (a plain Sequential's first child, or
    FactorizedReduce's own); True if there was one, so the caller must feed it ReLU(x)."""
    op = getattr(owner, attr)
    if _is_plain_sequential(op) and len(op) > 1 and type(op[0]) is nn.ReLU:
        _set_children(op, list(op)[1:])
        return True
    if type(op) is FactorizedReduce and type(op.relu) is nn.ReLU:
        op.relu = nn.Identity()
        return True
    return False


class ConvAdd(nn.Module):
    """``conv(x) + other``; on CPU one oneDNN convolution with the sum as a binary post-op, which
    saves a pass over the block's output (the fallback is the plain conv and add)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            if _plain_eager_call(x) and _plain_eager_call(other):
                return _onednn_conv(self.conv, x, other=other)
        return self.conv(x) + other


class _Add(nn.Module):
    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return x + other


def _split_tail_conv(op: nn.Module) -> tuple[nn.Module, nn.Conv2d] | None:
    """(the op without its last module, that module) when the op is a plain Sequential ending in a
    plain zero-padded conv."""
    if not _is_plain_sequential(op) or len(op) == 0:
        return None
    tail = op[-1]
    if not _plain_conv(tail) or tail.padding_mode != "zeros" or isinstance(tail.padding, str):
        return None
    return nn.Sequential(*list(op)[:-1]), tail


class SharedReluBlock(nn.Module):
    """A NASNet block whose ops take ReLU(state) from the cell's shared list where they start with
    one; a sum's last conv adds the other half's output as it writes its own (`ConvAdd`)."""

    def __init__(self, block: _Block, relu_a: bool, relu_b: bool, fuse_add: bool):
        super().__init__()
        self.input_a, self.input_b, self.concat = block.input_a, block.input_b, block.concat
        self.half_a: nn.Module = block.half_a
        self.half_b: nn.Module = block.half_b
        self.relu_a, self.relu_b = relu_a, relu_b
        self.add: nn.Module = _Add()
        if fuse_add and not self.concat:
            if _split_tail_conv(self.half_b) is None and _split_tail_conv(self.half_a) is not None:
                # a + b == b + a exactly in floating point: put the half ending in a conv second
                self.input_a, self.input_b, self.relu_a, self.relu_b = self.input_b, self.input_a, relu_b, relu_a
                self.half_a, self.half_b = self.half_b, self.half_a
            split = _split_tail_conv(self.half_b)
            if split is not None:
                self.half_b, self.add = split[0], ConvAdd(split[1])

    def forward(self, states: list[torch.Tensor], relued: list[torch.Tensor]) -> torch.Tensor:
        a = self.half_a(relued[self.input_a] if self.relu_a else states[self.input_a])
        b = self.half_b(relued[self.input_b] if self.relu_b else states[self.input_b])
        if self.concat:
            return torch.cat([a, b], dim=1)
        return self.add(b, a)


class SharedReluCell(NASNetCell):
    """A NASNet cell computing ReLU(state) once for every op that starts with it.

    In NASNet-A every separable conv begins with a ReLU, and a cell applies several of them to
    the same state (the normal cell reads h_{i-1} with three, TF slim's `nasnet_utils.py`), so the
    eager network computes the same ReLU up to three times; here each state's is computed once."""

    if TYPE_CHECKING:  # set by `_share_relus`; a class annotation would hide the type from TorchScript
        relu_needed: list[bool]
        relu_output: bool
        blocks: nn.ModuleList

    def forward(self, prev_prev: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(prev_prev), self.preprocess1(prev)]
        relued = [torch.relu(s) if self.relu_needed[i] else s for i, s in enumerate(states)]
        for block in self.blocks:
            out = block(states, relued)
            relued.append(torch.relu(out) if self.relu_needed[len(states)] else out)
            states.append(out)
        pieces = [tap(states) for tap in self.taps]
        if not self.relu_output:
            return torch.cat(pieces, dim=1)
        if not torch.jit.is_scripting():
            if _plain_eager_call(pieces[0]):
                return _relu_cat(pieces)
        return torch.relu(torch.cat(pieces, dim=1))


def _relu_cat(pieces: list[torch.Tensor]) -> torch.Tensor:
    """``relu(cat(pieces, 1))`` in one pass: each piece's ReLU written into its channels of the
    output (``clamp_min(x, 0)`` is ReLU, NaN included), instead of a concatenation and a second
    pass over the widest tensor of the stage."""
    first = pieces[0]
    layout = torch.channels_last if first.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    shape = (first.shape[0], sum(p.shape[1] for p in pieces), first.shape[2], first.shape[3])
    out = torch.empty(shape, dtype=first.dtype, device=first.device, memory_format=layout)
    start = 0
    for piece in pieces:
        torch.clamp_min(piece, 0, out=out[:, start : start + piece.shape[1]])
        start += piece.shape[1]
    return out


class SharedReluNASNet(NASNet):
    """A NASNet whose cell outputs are ReLU'd once for all their readers.

    Every reader of a cell's output -- the preprocessing of the next two cells and the head --
    starts with a ReLU (TF slim's `nasnet_utils.py`: ``_reduce_prev_layer`` and the cell base), so
    the eager network computes each ReLU twice on the widest tensors it has. When no reader wants
    the output without its ReLU, the cell returns it ReLU'd (`relu_done`; the concatenation and
    the ReLU in one pass) or the ReLU overwrites it: the cell output is the widest tensor of its
    stage and a fresh one costs new pages as well as the pass over it."""

    if TYPE_CHECKING:  # set by `_share_relus`
        relu_inputs: list[tuple[bool, bool]]
        relu_outputs: list[bool]
        relu_inplace: list[bool]
        relu_done: list[bool]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [self.stem(x)]
        relued = [self._relu(outputs[0], 0)]
        for k, cell in enumerate(self.cells):
            pp, p = self._inputs[k]
            relu_pp, relu_p = self.relu_inputs[k]
            out = cell(relued[pp] if relu_pp else outputs[pp], relued[p] if relu_p else outputs[p])
            relued.append(self._relu(out, k + 1))
            outputs.append(relued[-1] if self.relu_inplace[k + 1] else out)
            for i, last in enumerate(self._last_read):
                if last == k:
                    outputs[i] = relued[i] = out.new_empty(0)
        return self.classifier(self.head_dropout(relued[-1].mean((2, 3))))

    def _relu(self, out: torch.Tensor, index: int) -> torch.Tensor:
        """What the readers of output `index` that start with a ReLU take."""
        if not self.relu_outputs[index] or self.relu_done[index]:
            return out
        return out.relu_() if self.relu_inplace[index] else torch.relu(out)

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.forward(x), None  # deployed: no auxiliary head


def _share_relus(root: nn.Module, report: DeployReport, fuse_add: bool) -> None:
    """NASNet: each state's ReLU computed once for all the ops that begin with it.

    `report.shared_relus` counts the ReLU passes saved: ops stripped of their ReLU minus the
    ReLUs now computed once per state."""
    for module in list(root.modules()):
        if type(module) is not NASNetCell or not all(type(b) is _Block for b in module.blocks):
            continue
        needed = [False] * (2 + len(module.blocks))
        shared, stripped = [], 0
        for block in cast(list[_Block], list(module.blocks)):
            relu_a, relu_b = _strip_leading_relu(block, "half_a"), _strip_leading_relu(block, "half_b")
            for state, relu in ((block.input_a, relu_a), (block.input_b, relu_b)):
                needed[state] |= relu
                stripped += relu
            shared.append(SharedReluBlock(block, relu_a, relu_b, fuse_add))
            report.fused_conv_add += type(shared[-1].add) is ConvAdd
        module.blocks = nn.ModuleList(shared)
        module.__class__ = SharedReluCell
        cast(SharedReluCell, module).relu_needed = needed
        cast(SharedReluCell, module).relu_output = False  # the network's pass below may set it
        report.shared_relus += stripped - sum(needed)
    for module in list(root.modules()):
        if type(module) is not NASNet or module.aux is not None:
            continue
        readers = [0] * (1 + len(module.cells))  # per network output: readers that start with a ReLU
        raw_readers = [0] * (1 + len(module.cells))  # ... and readers that take it as it is
        relu_inputs: list[tuple[bool, bool]] = []
        for cell, (pp, p) in zip(module.cells, module._inputs):
            relu_pp, relu_p = _strip_leading_relu(cell, "preprocess0"), _strip_leading_relu(cell, "preprocess1")
            relu_inputs.append((relu_pp, relu_p))
            readers[pp] += relu_pp
            readers[p] += relu_p
            raw_readers[pp] += not relu_pp
            raw_readers[p] += not relu_p
        readers[-1] += 1  # the head's ReLU
        module.__class__ = SharedReluNASNet
        net = cast(SharedReluNASNet, module)
        net.relu_inputs = relu_inputs
        net.relu_outputs = [n > 0 for n in readers]
        net.relu_inplace = [n > 0 and raw == 0 for n, raw in zip(readers, raw_readers)]
        net.relu_done = [False] * len(readers)
        for k, cell in enumerate(module.cells, start=1):
            if isinstance(cell, SharedReluCell):
                cell.relu_output = net.relu_done[k] = net.relu_inplace[k]
        report.shared_relus += sum(readers) - sum(net.relu_outputs)


def _count_bn(root: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in root.modules())


# -- the entry point ------------------------------------------------------------------------------------------
def deploy(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    channels_last: bool | None = None,
    compile: bool = False,
    check: bool = False,
) -> nn.Module:  # noqa: A002 - torch's own word
    """An inference-only, faster copy of `model` (see the module docstring for what changes).

    Args:
        model: any network (nasforge's or not); it is deep-copied and never modified.
        example_input: a batch like the real inputs; sets the default memory format (from its
            device), warms up `compile`, and is what `check` compares on.
        channels_last: store 4-D weights NHWC; None means yes on CPU (where oneDNN prefers it),
            no elsewhere.
        compile: wrap the result in ``torch.compile`` (inductor, weights frozen as constants);
            call it under ``torch.no_grad()`` or ``torch.inference_mode()``.
        check: run both models on `example_input` and raise if they disagree beyond
            1e-4 relative (to the largest output) -- what `nasforge export` does.

    Returns:
        a module in eval mode with no trainable parameters, called like `model`;
        `deploy_report(result)` tells what was folded and removed.
    """
    was_training = model.training
    net = copy.deepcopy(model)
    model.train(was_training)  # deepcopy does not touch it; keep the promise explicit
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    report = DeployReport()
    before = _count_bn(net)

    _replace_training_only(net, report)
    for module in list(net.modules()):
        if isinstance(module, nn.Sequential):
            _fold_sequential(module, report)
        elif type(module) is FactorizedReduce:
            _fold_factorized_reduce(module, report)
    _prune_dead_branches(net, report)
    _unwrap_known(net, report)
    _simplify_sequentials(net, report)
    _inplace_activations(net, report)
    on_cpu = example_input.device.type == "cpu"
    if on_cpu and _pointwise_conv_available():
        _fuse_conv_act(net, report)
    _share_relus(net, report, fuse_add=on_cpu and _pointwise_conv_available())
    net.eval()  # the identities put in above were created in training mode
    report.kept_bn = _count_bn(net)
    assert report.kept_bn + report.folded_bn <= before

    if channels_last is None:
        channels_last = on_cpu
    if channels_last:
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stub lacks memory_format
    report.channels_last = bool(channels_last)
    net.__dict__[_REPORT_ATTR] = report  # a plain attribute: not a parameter, buffer or module

    if check:
        _check_same(model, net, example_input)
    if not compile:
        return net
    # torch.compile of a Module is an OptimizedModule (a Module); its stub says only "a callable"
    compiled = cast(nn.Module, torch.compile(net, backend="inductor", options={"freezing": True}))
    start = time.perf_counter()
    with torch.no_grad():
        compiled(example_input)
    report.compiled = True
    report.compile_seconds = time.perf_counter() - start
    return compiled


def _check_same(model: nn.Module, deployed: nn.Module, example: torch.Tensor) -> None:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected, got = model(example), deployed(example)
    finally:
        model.train(was_training)
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    diff = float((got - expected).abs().max()) if expected.numel() else 0.0
    if not diff <= 1e-4 * max(1.0, scale):
        from nasforge.errors import NasforgeError

        raise NasforgeError(
            f"the deployed model disagrees with the original by {diff:.3g} "
            f"(outputs up to {scale:.3g}); export with --no-deploy"
        )


class _CallableModule(types.ModuleType):
    """``nasforge.deploy`` is both this module and the function: Python binds a package's submodule
    over a same-named attribute once it is imported, so the module itself calls `deploy`."""

    def __call__(self, *args: Any, **kwargs: Any) -> nn.Module:
        return deploy(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
__wrapped__ = deploy  # inspect.signature(nasforge.deploy) shows deploy's
