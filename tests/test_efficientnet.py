"""EfficientNet: the MBConv block, rounding rules, the B0-B7 registry entries and their fidelity.

Fidelity figures are the published ones (torchvision/timm parameter counts; conv+linear MACs with
PyTorch's FLOP counter at native resolution). The big models are built on the meta device, which
allocates no weights, so counting all eight takes seconds.
"""

import json

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from nasforge.cli import main
from nasforge.errors import ConfigError
from nasforge.models import create, get_model_spec, list_models
from nasforge.models.efficientnet import (B0_STAGES, EFFICIENTNET_PARAMS, EfficientNet, StageSpec,
                                          efficientnet_plan, round_filters, round_repeats)
from nasforge.nn.layers import DropPath
from nasforge.nn.mbconv import MBConv, SqueezeExcite
from nasforge.profile import count_macs, count_params

PUBLISHED = {  # name: (params, GMACs)
    "efficientnet_b0": (5_288_548, 0.386),
    "efficientnet_b1": (7_794_184, 0.687),
    "efficientnet_b2": (9_109_994, 0.994),
    "efficientnet_b3": (12_233_232, 1.827),
    "efficientnet_b4": (19_341_616, 4.394),
    "efficientnet_b5": (30_389_784, 10.266),
    "efficientnet_b6": (43_040_704, 19.068),
    "efficientnet_b7": (66_347_960, 37.746),
}

# Stem / stage out-channels / head, and repeats per stage (Tan & Le 2019, Table 1, scaled per model).
STRUCTURE = {
    "efficientnet_b0": (32, (16, 24, 40, 80, 112, 192, 320), 1280, (1, 2, 2, 3, 3, 4, 1)),
    "efficientnet_b1": (32, (16, 24, 40, 80, 112, 192, 320), 1280, (2, 3, 3, 4, 4, 5, 2)),
    "efficientnet_b2": (32, (16, 24, 48, 88, 120, 208, 352), 1408, (2, 3, 3, 4, 4, 5, 2)),
    "efficientnet_b3": (40, (24, 32, 48, 96, 136, 232, 384), 1536, (2, 3, 3, 5, 5, 6, 2)),
    "efficientnet_b4": (48, (24, 32, 56, 112, 160, 272, 448), 1792, (2, 4, 4, 6, 6, 8, 2)),
    "efficientnet_b5": (48, (24, 40, 64, 128, 176, 304, 512), 2048, (3, 5, 5, 7, 7, 9, 3)),
    "efficientnet_b6": (56, (32, 40, 72, 144, 200, 344, 576), 2304, (3, 6, 6, 8, 8, 11, 3)),
    "efficientnet_b7": (64, (32, 48, 80, 160, 224, 384, 640), 2560, (4, 7, 7, 10, 10, 13, 4)),
}


def meta_model(name, **kw):
    with torch.device("meta"):
        return create(name, **kw)


# -- rounding rules ------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels, mult, divisor, min_value, expected", [
    (32, 1.0, 8, None, 32),
    (32, 1.1, 8, None, 32),     # 35.2 -> 32 (within 10%)
    (40, 1.1, 8, None, 48),     # 44 -> 48 (ties round up)
    (1280, 1.1, 8, None, 1408),
    (112, 1.2, 8, None, 136),   # 134.4 -> 136
    (3, 3.1, 8, None, 16),      # 9.3 -> 8 is > 10% below, so one more divisor
    (2, 1.0, 8, None, 8),       # at least the divisor
    (2, 1.0, 8, 4, 4),          # ... or min_value
    (20, 1.0, 16, None, 32),    # 16 < 0.9 x 20
    (37, None, 8, None, 37),    # no multiplier: unchanged
])
def test_round_filters(channels, mult, divisor, min_value, expected):
    assert round_filters(channels, mult, divisor, min_value) == expected


@pytest.mark.parametrize("repeats, mult, expected", [
    (1, 1.0, 1), (3, 1.1, 4), (2, 1.1, 3), (4, 3.1, 13), (3, 1.4, 5), (1, 2.2, 3),
    (10, 1.1, 11),              # 11.000000000000002 in floating point: not 12
    (5, None, 5),
])
def test_round_repeats(repeats, mult, expected):
    assert round_repeats(repeats, mult) == expected


@pytest.mark.parametrize("name", sorted(STRUCTURE))
def test_published_structure(name):
    w, d, _, _ = EFFICIENTNET_PARAMS[name]
    plan = efficientnet_plan(B0_STAGES, w, d)
    stem, channels, head, repeats = STRUCTURE[name]
    assert (plan.stem, plan.channels, plan.head, plan.repeats) == (stem, channels, head, repeats)


# -- fidelity ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_params_and_macs(name):
    params, gmacs = PUBLISHED[name]
    model = meta_model(name)
    assert count_params(model) == params
    assert abs(count_macs(model, model.resolution) / (gmacs * 1e9) - 1) < 0.01


def test_meta_counts_equal_real_counts():
    model = create("efficientnet_b0")
    assert count_params(model) == 5_288_548
    assert count_macs(model, 224) == count_macs(meta_model("efficientnet_b0"), 224)


def test_registry_entries():
    names = list_models("efficientnet_*")
    assert set(PUBLISHED) <= set(names) and {"efficientnet_b8", "efficientnet_l2"} <= set(names)
    for name, (w, d, r, p) in EFFICIENTNET_PARAMS.items():
        spec = get_model_spec(name)
        assert spec.family == "efficientnet" and spec.resolution == r and spec.num_classes == 1000
        assert spec.defaults["width_mult"] == w and spec.defaults["depth_mult"] == d
        assert spec.defaults["dropout"] == p
    m = meta_model("efficientnet_b3", num_classes=10, dropout=0.1)
    assert m.classifier.out_features == 10 and m.dropout.p == 0.1 and m.resolution == 300
    with pytest.raises(ConfigError, match="not_an_option"):
        create("efficientnet_b0", not_an_option=1)


def test_cli_profile_json(capsys):
    assert main(["profile", "efficientnet_b0", "--json", "--no-latency"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] == 5_288_548 and out["resolution"] == 224
    assert abs(out["macs"] / 0.386e9 - 1) < 0.01


# -- the block -----------------------------------------------------------------------------------------
def test_mbconv_structure():
    b = MBConv(16, 24, kernel=5, stride=2, expand_ratio=6, se_ratio=0.25)
    assert b.hidden == 96 and not b.use_skip and isinstance(b.drop_path, nn.Identity)
    assert b.depthwise[0].groups == 96 and b.depthwise[0].stride == (2, 2) and b.depthwise[0].padding == (2, 2)
    assert isinstance(b.se, SqueezeExcite) and b.se.reduce.out_channels == 4  # 0.25 x *input* channels
    assert len(b.project) == 2  # conv + BN, no activation
    e1 = MBConv(32, 16, expand_ratio=1, se_ratio=0.25)
    assert isinstance(e1.expand, nn.Identity) and e1.se.reduce.out_channels == 8
    tiny = MBConv(2, 2, se_ratio=0.25)
    assert tiny.se.reduce.out_channels == 1 and tiny.use_skip  # max(1, ...)
    assert isinstance(MBConv(8, 8, se_ratio=0).se, nn.Identity)


def test_mbconv_skip_and_drop_path():
    torch.manual_seed(0)
    b = MBConv(8, 8, drop_path_rate=0.5).train()
    x = torch.randn(16, 8, 6, 6)
    residual = b.project(b.se(b.depthwise(b.expand(x))))
    out = b(x)
    # each sample either kept (x + 2 * residual) or dropped (x)
    for i in range(16):
        dropped = torch.allclose(out[i], x[i], atol=1e-6)
        kept = torch.allclose(out[i], x[i] + 2 * residual[i], atol=1e-5)
        assert dropped or kept
    b.eval()
    assert torch.allclose(b(x), x + b.project(b.se(b.depthwise(b.expand(x)))), atol=1e-6)


class _Ops(TorchDispatchMode):
    """The names of the given aten operators that run inside it, in order."""

    def __init__(self, *packets):
        super().__init__()
        self.packets = packets
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in self.packets:
            self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def test_mbconv_writes_se_product_and_skip_sum_in_place_only_without_gradients():
    """Inference reuses the block's own tensors; with autograd recording, nothing autograd keeps is
    overwritten (the one in-place product is the squeeze-and-excitation function's own SiLU map,
    which its backward recomputes)."""
    torch.manual_seed(0)
    b = MBConv(8, 8, drop_path_rate=0.2).eval()
    x = torch.randn(2, 8, 6, 6)
    x_before = x.clone()
    in_place = (torch.ops.aten.mul_, torch.ops.aten.add_)
    with _Ops(*in_place) as recording:
        expected = b(x)
    assert recording.names == ["mul_"] and expected.grad_fn is not None
    with torch.no_grad(), _Ops(*in_place) as inference:
        got = b(x)
    assert inference.names == ["mul_", "add_"]
    torch.testing.assert_close(got, expected.detach(), rtol=1e-6, atol=1e-6)
    assert torch.equal(x, x_before)  # the block's input itself is never written
    expected.sum().backward()  # autograd finds every saved tensor as it was


def _se_gradients(se: SqueezeExcite, x: torch.Tensor, grad: torch.Tensor):
    x = x.clone().requires_grad_()
    out = se(x)
    return out, torch.autograd.grad(out, [x, *se.parameters()], grad)


def test_squeeze_excite_trains_as_one_function_with_the_graphs_gradients():
    """A CPU training step runs the block as one autograd function; its gradients are those of
    PyTorch's graph of the same modules (which a hook, bypassed by the function, brings back)."""
    from nasforge.nn.mbconv import _SqueezeExciteFunction

    torch.manual_seed(0)
    se = SqueezeExcite(12, 3)
    x = torch.randn(3, 12, 5, 7).contiguous(memory_format=torch.channels_last)
    grad = torch.randn_like(x)
    fused, fused_grads = _se_gradients(se, x, grad)
    assert type(fused.grad_fn).__name__ == "_SqueezeExciteFunctionBackward"
    handle = se.register_forward_hook(lambda module, args, out: None)
    plain, plain_grads = _se_gradients(se, x, grad)
    handle.remove()
    assert type(plain.grad_fn).__name__ == "MulBackward0"
    torch.testing.assert_close(fused, plain, rtol=1e-6, atol=1e-6)
    for got, expected in zip(fused_grads, plain_grads):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    weights = [p.detach().double().requires_grad_() for p in se.parameters()]
    x64 = torch.randn(2, 12, 3, 4, dtype=torch.float64, requires_grad=True)
    for silu_first in (False, True):
        assert torch.autograd.gradcheck(_SqueezeExciteFunction.apply, (x64, *weights, silu_first))
    with torch.no_grad():  # inference keeps the modules' own path
        assert se(x).grad_fn is None


def test_mbconv_trains_its_depthwise_silu_inside_the_squeeze_excitation_function():
    """The activated depthwise map is not kept for backward; the gradients are the modules' own."""
    torch.manual_seed(0)
    block = MBConv(8, 8, kernel=3, expand_ratio=4).train()
    x = torch.randn(2, 8, 7, 7).contiguous(memory_format=torch.channels_last)

    def run():  # output, parameter gradients, shapes of the tensors saved for backward
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
            out = block(x)
        return out, torch.autograd.grad(out.square().sum(), [*block.parameters()]), saved

    fused, fused_grads, saved = run()
    handle = block.depthwise[2].register_forward_hook(lambda module, args, out: None)  # the plain graph
    plain, plain_grads, saved_plain = run()
    handle.remove()
    hidden_map = torch.Size([2, 32, 7, 7])
    assert saved.count(hidden_map) == saved_plain.count(hidden_map) - 1  # one activated map fewer
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)
    for got, expected in zip(fused_grads, plain_grads):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_conv_bn_silu_trains_out_of_place_and_infers_in_place():
    """An in-place SiLU would make autograd copy its input; inference owns the map and overwrites it."""
    from nasforge.nn.mbconv import conv_bn_act

    silu_ops = (torch.ops.aten.silu, torch.ops.aten.silu_, torch.ops.aten.clone)
    torch.manual_seed(0)
    unit = conv_bn_act(4, 6, 3)
    assert not unit[2].inplace and conv_bn_act(4, 6, 3, act=nn.ReLU)[2].inplace
    x = torch.randn(2, 4, 8, 8)
    with _Ops(*silu_ops) as training:
        trained = unit(x)
    assert training.names == ["silu"]
    trained.sum().backward()
    unit.eval()
    plain = nn.Sequential(*unit)(x).detach()
    with torch.no_grad(), _Ops(*silu_ops) as inference:
        got = unit(x)
    assert inference.names == ["silu_"]
    torch.testing.assert_close(got, plain, rtol=1e-6, atol=1e-6)


def test_stochastic_depth_grows_linearly():
    m = EfficientNet(drop_connect_rate=0.2)
    blocks = [b for stage in m.stages for b in stage]
    assert len(blocks) == 16
    for i, b in enumerate(blocks):
        if b.use_skip:
            assert isinstance(b.drop_path, DropPath) and b.drop_path.rate == pytest.approx(0.2 * i / 16)
    m.set_drop_connect_rate(0.4)
    assert blocks[-2].drop_path.rate == pytest.approx(0.4 * 14 / 16)


def test_b0_forward_backward_small_resolution():
    torch.manual_seed(0)
    m = create("efficientnet_b0", num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    out = m(x)
    assert out.shape == (2, 10)
    out.logsumexp(1).mean().backward()
    grads = [p.grad for p in m.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_custom_stage_table_and_errors():
    stages = [StageSpec(1, 3, 1, 8, 1, 0.0), {"expand_ratio": 4, "kernel": 5, "stride": 2, "channels": 16,
                                             "repeats": 2, "se_ratio": 0.25}, (6, 3, 2, 24, 1)]
    m = EfficientNet(stages, num_classes=3, stem_channels=8, head_channels=64, resolution=32)
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    with pytest.raises(ConfigError, match=r"stages\[0\]\.kernel"):
        EfficientNet([(1, 4, 1, 8, 1)])
    with pytest.raises(ConfigError, match=r"stages\[1\]"):
        EfficientNet([(1, 3, 1, 8, 1), "nope"])
    with pytest.raises(ConfigError, match="width_mult"):
        EfficientNet(width_mult=-1)
    with pytest.raises(ConfigError, match="dropout"):
        EfficientNet(dropout=1.5)
