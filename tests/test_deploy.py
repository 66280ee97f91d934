"""`nasforge.deploy`: the inference copy of every network equals the eager model in eval mode.

Every registered model is checked at a small size (fewer cells and filters, a lower width and depth
multiplier, 32 px), plus random architectures of every search space, with BatchNorm statistics
randomised so that a wrong fold shows.
"""

from __future__ import annotations

import copy
import inspect

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import nasforge
from nasforge.arch.nasnet import Block, Cell, NASNetArchitecture
from nasforge.arch.nb201 import NB201Cell
from nasforge.deploy import deploy, deploy_report, fold_conv_bn
from nasforge.models import create, get_model_spec, list_models
from nasforge.models.efficientnet import EFFICIENTNET_PARAMS
from nasforge.nn.layers import ConvBNSequential, DropPath
from nasforge.nn.mbconv import conv_bn_act
from nasforge.spaces import SPACES, NASNetSpace, NB201Space


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Running statistics and affine parameters away from their init (1, 0), as after training."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=gen) * 0.2)
    return model


def _bn_count(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def _assert_same(model: nn.Module, deployed: nn.Module, x: torch.Tensor) -> None:
    model.eval()
    with torch.no_grad():
        expected = model(x)
        got = deployed(x)
    scale = max(1.0, float(expected.abs().max()))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * scale)


def _small_registered(name: str) -> tuple[nn.Module, int]:
    spec = get_model_spec(name)
    if spec.family == "nasnet":
        return create(name, num_classes=5, num_cells=1, num_filters=8, aux_head=True,
                      resolution=32 if spec.resolution <= 32 else 64), 32 if spec.resolution <= 32 else 64
    w, d, _, _ = EFFICIENTNET_PARAMS[name]
    # each model's own multipliers shrunk: distinct stage depths, still tiny
    return create(name, num_classes=5, width_mult=w / 8, depth_mult=d / 4, resolution=32), 32


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_deploys_to_the_same_outputs(name):
    torch.manual_seed(0)
    model, r = _small_registered(name)
    _randomize_bn(model)
    model.train()  # deploy must not care, nor change it
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, r, r)
    deployed = deploy(model, x)

    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert _bn_count(model) > 0 and _bn_count(deployed) == 0  # every BN of a registered model folds
    assert not any(m.training for m in deployed.modules())
    assert not any(isinstance(m, (nn.Dropout, DropPath)) for m in deployed.modules())
    assert not any(p.requires_grad for p in deployed.parameters())
    report = deploy_report(deployed)
    assert report is not None and report.channels_last and report.kept_bn == 0
    if spec_has_aux(name):
        assert deployed.aux is None and report.aux_heads == 1 and model.aux is not None
    _assert_same(model, deployed, x)
    model.train()
    _assert_same(model, deployed, torch.randn(2, 3, r, r))  # _assert_same evaluates in eval mode


def spec_has_aux(name: str) -> bool:
    return get_model_spec(name).family == "nasnet"


#: small networks of the spaces whose search networks are larger than needed here: space name ->
#: (space options, network options, image side); every other registered space (a plug-in's too) is
#: checked with the network its search trains (its `proxy_network`) on 16 px images
SMALL_NETWORKS = {
    "nasnet": ({}, {"num_cells": 1, "num_filters": 8, "stem": "cifar"}, 16),
    "nb201": ({}, {"channels": 4, "cells_per_stage": 1}, 16),
    "macro": ({}, {"stem_channels": 8, "stage_channels": (8, 16, 16), "head_channels": 16, "dropout": 0.1}, 16),
    "mbconv": ({}, {"width_mult": 0.25, "depth_mult": 0.25, "resolution": 32}, 32),
    "layerwise": ({"depth": 4}, {"dropout": 0.1}, 12),
}


def _random_networks(space_name: str, seed: int, count: int = 3):
    """(i, network, image side) for `count` random architectures of a space, BN statistics randomised."""
    options, network, r = SMALL_NETWORKS.get(space_name, ({}, None, 16))
    space = SPACES.create(space_name, **options)
    network = dict(space.proxy_network) if network is None else network
    rng = np.random.default_rng(seed)
    for i in range(count):
        arch = space.sample(rng)
        torch.manual_seed(i)
        yield i, _randomize_bn(space.build(arch, num_classes=5, **network), seed=i), r


@pytest.mark.parametrize("space_name", sorted(SPACES))
def test_random_searched_architectures_deploy_to_the_same_outputs(space_name):
    for i, model, r in _random_networks(space_name, seed=7):
        x = torch.randn(2, 3, r, r)
        deployed = deploy(model, x, channels_last=bool(i % 2))
        assert _bn_count(deployed) == deploy_report(deployed).kept_bn
        assert _bn_count(deployed) <= (1 if space_name == "nb201" else 0)  # NB201's BN after a sum stays
        _assert_same(model, deployed, x)


def test_nb201_dead_edges_are_pruned_and_the_bn_after_a_sum_is_kept():
    # node 1 feeds nothing (1->2 and 1->3 are none): its 3x3 conv is dead
    arch = NB201Cell("nor_conv_3x3", "nor_conv_1x1", "none", "skip_connect", "none", "nor_conv_3x3")
    torch.manual_seed(0)
    model = _randomize_bn(NB201Space().build(arch, channels=4, cells_per_stage=2, num_classes=3))
    x = torch.randn(2, 3, 16, 16)
    deployed = deploy(model, x)
    report = deploy_report(deployed)
    assert report.pruned == 6  # one edge in each of the 3 x 2 cells
    assert report.kept_bn == 1 and _bn_count(deployed) == 1  # lastact's BN has no conv before it
    _assert_same(model, deployed, x)


def test_unused_nasnet_cell_input_loses_its_preprocessing():
    # neither block nor the output reads h_{i-1} (state 0)
    cell = Cell((Block(1, "sep_conv_3x3", 1, "max_pool_3x3"), Block(2, "conv_3x3", 1, "identity")))
    arch = NASNetArchitecture(cell, cell)
    torch.manual_seed(0)
    model = _randomize_bn(NASNetSpace(num_blocks=2).build(arch, num_classes=3, num_cells=1, num_filters=8))
    x = torch.randn(2, 3, 16, 16)
    deployed = deploy(model, x)
    assert deploy_report(deployed).pruned >= 4
    assert all(isinstance(c.preprocess0, nn.Identity) for c in deployed.cells)
    _assert_same(model, deployed, x)


class _CountOps(TorchDispatchMode):
    """Counts the ReLU passes (functional, module or in place) and the sums of maps a forward runs."""

    def __init__(self):
        super().__init__()
        self.relus = self.adds = self.clamped = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.relu, torch.ops.aten.relu_):
            self.relus += 1
        elif func.overloadpacket is torch.ops.aten.clamp_min:  # a ReLU written into part of a tensor
            self.clamped += 1
        elif func is torch.ops.aten.add.Tensor and args[0].dim() == 4:  # a sum of maps, not of BN vectors
            self.adds += 1
        return func(*args, **(kwargs or {}))


def test_nasnet_computes_each_shared_relu_once_and_fuses_its_sums():
    """Every separable conv and every cell's preprocessing starts with a ReLU of a state that other
    ops read too; deployed, each state's ReLU runs once, a stacked separable conv's middle ReLU
    runs as its pointwise conv's post-op, and a block's sum as its last conv's (oneDNN on CPU)."""
    torch.manual_seed(0)
    model = _randomize_bn(create("nasnet_a_mobile", num_classes=5, num_cells=1, num_filters=8, resolution=32))
    x = torch.randn(2, 3, 32, 32)
    deployed = deploy(model, x)
    report = deploy_report(deployed)
    counters = []
    with torch.no_grad():
        for net in (model.eval(), deployed):
            with _CountOps() as counter:
                net(x)
            counters.append(counter)
    eager, fast = counters
    onednn = torch.backends.mkldnn.is_available()  # the fusions need it; sharing the ReLUs does not
    assert report.shared_relus > 0 and (report.fused_conv_act > 0) == (report.fused_conv_add > 0) == onednn
    # a network output that every reader takes through a ReLU comes ReLU'd from its cell, the
    # concatenation and the ReLU in one pass (a clamp per piece): all but the stem's (the first
    # cell takes it as it is) and the third cell's (the fourth cell's h_{i-1} needs no 1x1 conv at
    # this width, so it is read as it is too)
    assert deployed.relu_done == [False, True, False] + [True] * (len(deployed.cells) - 2)
    one_pass = [cell for cell, done in zip(deployed.cells, deployed.relu_done[1:]) if done]
    assert fast.clamped == sum(len(cell.taps) for cell in one_pass)
    assert fast.relus + len(one_pass) == eager.relus - report.shared_relus - report.fused_conv_act
    assert fast.relus < eager.relus * 0.6
    assert fast.adds == eager.adds - report.fused_conv_add
    _assert_same(model, deployed, x)  # (test_train_export scripts and exports a deployed NASNet-A)


def test_fold_conv_bn_handles_grouped_convs_with_a_bias_and_keeps_unfoldable_bn():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=4, bias=True)
    bn = _randomize_bn(nn.Sequential(nn.BatchNorm2d(8)))[0].eval()
    x = torch.randn(2, 8, 6, 6)
    expected = bn(conv(x))
    fold_conv_bn(conv, bn)
    torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)

    batch_stats = nn.BatchNorm2d(4, track_running_stats=False)  # normalises with batch statistics: not affine
    net = nn.Sequential(nn.Conv2d(3, 4, 3), batch_stats, nn.ReLU(), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))
    deployed = deploy(net, torch.randn(2, 3, 8, 8))
    assert deploy_report(deployed).folded_bn == 1 and deploy_report(deployed).kept_bn == 1
    _assert_same(net, deployed, torch.randn(2, 3, 8, 8))


def test_nasforge_deploy_is_the_function_and_the_report_survives_a_copy():
    import nasforge.deploy as module

    torch.manual_seed(0)
    model = _randomize_bn(create("efficientnet_b0", num_classes=4, width_mult=0.25, depth_mult=0.25))
    x = torch.randn(2, 3, 32, 32)
    deployed = nasforge.deploy(model, x, check=True)  # checks against the eager model itself
    assert nasforge.deploy is module and callable(module) and module.deploy_report is deploy_report
    assert list(inspect.signature(nasforge.deploy).parameters)[:2] == ["model", "example_input"]
    assert deploy_report(copy.deepcopy(deployed)) == deploy_report(deployed)
    assert deploy_report(model) is None
    _assert_same(model, deployed, x)


@pytest.mark.slow
def test_compiled_deploy_runs_on_cpu():
    """torch.compile (inductor) on the CPU; a tiny network, as compiling costs seconds per kernel."""
    torch.manual_seed(0)
    model = _randomize_bn(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                                        nn.Linear(4 * 6 * 6, 3)))
    x = torch.randn(2, 3, 8, 8)
    compiled = deploy(model, x, compile=True)
    report = deploy_report(compiled)
    assert report.compiled and report.compile_seconds is not None and report.compile_seconds > 0
    _assert_same(model, compiled, x)


def test_export_writes_the_deployed_network_unless_told_not_to(tmp_path):
    from nasforge.export import ModelConfig, export_model

    config = ModelConfig(name="tiny", num_classes=3, in_channels=3, resolution=16, mean=(0.5,) * 3,
                         std=(0.25,) * 3, model="efficientnet_b0")
    torch.manual_seed(0)
    model = _randomize_bn(create("efficientnet_b0", num_classes=3, width_mult=0.1, depth_mult=0.1))
    kinds = {}
    for deployed in (True, False):
        path = tmp_path / f"model-{deployed}.pt2"
        result = export_model(model, config, "pt2", path, deploy=deployed)
        assert result.deployed is deployed and result.to_dict()["deployed"] is deployed
        program = torch.export.load(str(path))
        kinds[deployed] = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert not any("batch_norm" in k for k in kinds[True]) and any("batch_norm" in k for k in kinds[False])
    assert not any("mkldnn" in k for k in kinds[True])  # the oneDNN fast path never reaches an export
    # TorchScript scripts the deployed blocks too (the export checks the reloaded file's outputs)
    result = export_model(model, config, "torchscript", tmp_path / "model.ts")
    assert result.method == "script" and result.max_abs_diff < 1e-4


def test_profile_deploy_measures_the_deployed_model(capsys):
    import json

    from nasforge.cli import main

    assert main(["profile", "nasnet_a_mobile", "--resolution", "32", "--deploy", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["deployed"] is True and out["latency_ms"] > 0 and out["peak_memory_bytes"] > 0
    assert out["params"] == 5_289_978  # counts are the trained network's, not the folded copy's


# -- the eager model's own CPU inference path ----------------------------------------------------------
def _plain_eval(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The eval forward as PyTorch's modules compute it: with autograd on, neither the in-place
    BatchNorm nor the channels_last layout of CPU inference runs."""
    model.eval()
    with torch.enable_grad():
        return model(x).detach()


def _assert_fast_inference_is_plain(model: nn.Module, x: torch.Tensor) -> None:
    original = x.clone()
    with torch.no_grad():
        fast = model(x)
    with torch.inference_mode():
        inference = model(x)
    plain = _plain_eval(model, x)
    assert torch.equal(x, original) and x.stride() == original.stride()  # the caller's input is untouched
    scale = max(1.0, float(plain.abs().max()))
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5 * scale)
    torch.testing.assert_close(inference, fast, rtol=0, atol=0)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_infers_on_cpu_as_its_plain_eval_forward(name, layout):
    torch.manual_seed(0)
    model, r = _small_registered(name)
    _randomize_bn(model).eval()
    x = torch.randn(2, 3, r, r)
    if layout == "channels_last":
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    _assert_fast_inference_is_plain(model, x)


@pytest.mark.parametrize("space_name", sorted(SPACES))
def test_random_searched_architectures_infer_on_cpu_as_their_plain_eval_forward(space_name):
    for _, model, r in _random_networks(space_name, seed=11):
        _assert_fast_inference_is_plain(model.eval(), torch.randn(2, 3, r, r))


class _BatchNormOps(TorchDispatchMode):
    """The BatchNorm kernels a forward runs: out-of-place, or writing into a given tensor."""

    def __init__(self):
        super().__init__()
        self.fresh = self.in_place = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.ops.aten.native_batch_norm.out, torch.ops.aten.addcmul.out):
            self.in_place += kwargs["out"] is args[0] or kwargs["out"] is args[1]
        elif "batch_norm" in func.overloadpacket.__name__:
            self.fresh += 1
        return func(*args, **kwargs)


@pytest.mark.parametrize("channels_last", [False, True])
def test_conv_bn_sequential_normalises_in_place_only_what_nobody_else_can_read(channels_last):
    torch.manual_seed(0)
    unit = _randomize_bn(conv_bn_act(4, 6, 3)).eval()
    x = torch.randn(2, 4, 9, 9)
    if channels_last:
        unit.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    reference = nn.Sequential(*unit)  # the same modules, PyTorch's own Sequential
    with torch.no_grad():
        expected = reference(x)
        with _BatchNormOps() as ops:
            got = unit(x)
    assert (ops.in_place, ops.fresh) == (1, 0)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)

    kept = []  # a hook that keeps the conv's output must see it as the conv wrote it
    handle = unit[0].register_forward_hook(lambda module, args, out: kept.append(out))
    with torch.no_grad(), _BatchNormOps() as ops:
        got = unit(x)
        conv_out = unit[0](x)
    handle.remove()
    assert (ops.in_place, ops.fresh) == (0, 1)
    torch.testing.assert_close(kept[0], conv_out, rtol=0, atol=0)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)

    unit.train()  # training: PyTorch's path, batch statistics, running averages updated alike
    reference_copy = copy.deepcopy(reference).train()
    with _BatchNormOps() as ops:
        out = unit(x)
    torch.testing.assert_close(out, reference_copy(x), rtol=1e-6, atol=1e-6)
    assert ops.in_place == 0 and ops.fresh == 1
    torch.testing.assert_close(unit[1].running_mean, reference_copy[1].running_mean, rtol=0, atol=0)
    out.sum().backward()
    assert unit[0].weight.grad is not None
    scripted = torch.jit.script(unit.eval())  # TorchScript compiles the plain loop
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), reference_copy.eval()(x), rtol=1e-6, atol=1e-6)


def test_conv_bn_sequential_never_normalises_the_callers_map_in_place():
    """An in-place ReLU handed the caller's map returns that map: the BN after it must not write into it."""
    torch.manual_seed(0)
    bn = _randomize_bn(nn.Sequential(nn.BatchNorm2d(4)))[0].eval()
    for channels_last in (False, True):
        x = torch.randn(2, 4, 5, 5)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        ours, plain = x.clone(), x.clone()
        with torch.no_grad():
            got = ConvBNSequential(nn.ReLU(inplace=True), bn).eval()(ours)
            expected = nn.Sequential(nn.ReLU(inplace=True), bn).eval()(plain)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
        torch.testing.assert_close(ours, plain, rtol=0, atol=0)  # ReLU'd, as nn.Sequential leaves it
        assert got.data_ptr() != ours.data_ptr()


@pytest.mark.parametrize("name", ["efficientnet_b0", "nasnet_a_cifar"])
def test_cpu_inference_runs_channels_last_inside_whatever_the_callers_layout(name):
    """The first conv sees channels_last in CPU inference; training and autograd see the caller's map."""
    torch.manual_seed(0)
    model, r = _small_registered(name)
    layouts = []
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    first_conv.register_forward_pre_hook(
        lambda module, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    x = torch.randn(2, 3, r, r)
    model.eval()
    with torch.no_grad():
        model(x)
    model(x)  # eval, autograd recording
    model.train()
    with torch.no_grad():
        model(x)
    assert layouts == [True, False, False]


def test_efficientnet_features_come_back_in_the_callers_layout():
    torch.manual_seed(0)
    model = _randomize_bn(create("efficientnet_b0", width_mult=0.25, depth_mult=0.25, resolution=96)).eval()
    x = torch.randn(2, 3, 96, 96)  # a 3x3 head map: its two layouts differ
    with torch.no_grad():
        contiguous = model.forward_features(x)
        channels_last = model.forward_features(x.contiguous(memory_format=torch.channels_last))
    assert contiguous.is_contiguous()
    assert channels_last.is_contiguous(memory_format=torch.channels_last) and not channels_last.is_contiguous()
    torch.testing.assert_close(contiguous, channels_last, rtol=0, atol=0)
