
import numpy as np
import pytest
import torch
from toys import deprecations_are_errors

from nasforge.arch.nasnet import COMBINERS
from nasforge.arch.nasnet_cells import NASNET_A
from nasforge.errors import ConfigError, UnknownNameError
from nasforge.export import to_exported_program, to_onnx
from nasforge.models import create, get_model_spec, list_models
from nasforge.nn.layers import DropPath, FactorizedReduce
from nasforge.nn.ops import OP_NAMES
from nasforge.profile import count_macs, count_params
from nasforge.spaces import SPACES, NASNetSpace

NASNET_MODELS = [n for n in list_models() if get_model_spec(n).family == "nasnet"]


def _small(name):
    """A registered model at a small size: same cells and wiring, fewer/lower everything."""
    spec = get_model_spec(name)
    overrides = {"num_cells": 1, "num_filters": 8}
    resolution = 32 if spec.resolution <= 32 else 64
    return create(name, num_classes=5, resolution=resolution, aux_head=True, **overrides), resolution


@pytest.mark.parametrize("name", NASNET_MODELS)
def test_every_registered_model_trains_a_step(name):
    torch.manual_seed(0)
    model, r = _small(name)
    model.train()
    x = torch.randn(2, 3, r, r)
    logits, aux = model.forward_with_aux(x)
    assert logits.shape == (2, 5) and aux is not None and aux.shape == (2, 5)
    loss = logits.logsumexp(1).mean() + 0.4 * aux.logsumexp(1).mean()
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    assert model(x).shape == (2, 5)


def test_nasnet_a_large_fidelity():
    model = create("nasnet_a_large")
    params = count_params(model)
    assert params == 88_753_150  # the well-known PyTorch port, 1000 classes, no aux head
    macs = count_macs(model, 331)
    assert abs(macs / 23.78e9 - 1) < 0.01


def test_nasnet_a_mobile_fidelity():
    model = create("nasnet_a_mobile")
    assert abs(count_params(model) / 5.3e6 - 1) < 0.02
    assert abs(count_macs(model, 224) / 564e6 - 1) < 0.02


def test_nasnet_a_cifar_fidelity():
    assert abs(count_params(create("nasnet_a_cifar", num_classes=10)) / 3.3e6 - 1) < 0.03


def test_amoebanet_and_darts_cifar_sizes_match_their_papers():
    assert abs(count_params(create("amoebanet_a_cifar")) / 3.2e6 - 1) < 0.03  # AmoebaNet-A N=6 F=36
    assert abs(count_params(create("darts_v2_cifar")) / 3.3e6 - 1) < 0.03    # DARTS (2nd order)


def test_feature_map_sizes_follow_the_reference():
    sizes = []
    model = create("nasnet_a_mobile").eval()
    hooks = [c.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:]))) for c in model.cells]
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    # stem cells 56 and 28 px, then 4 normal @28, reduction @14, 4 normal, reduction @7, 4 normal
    assert [s[1] for s in sizes] == [56, 28] + [28] * 4 + [14] * 5 + [7] * 5
    assert sizes[-1][0] == 1056 and sizes[2][0] == 264 and sizes[6][0] == 352


def test_any_sampled_architecture_builds_and_runs():
    space = NASNetSpace()
    rng = np.random.default_rng(3)
    for _ in range(4):
        arch = space.sample(rng)
        net = space.build(arch, num_classes=3, num_cells=1, num_filters=8)
        out = net(torch.randn(2, 3, 16, 16))
        assert out.shape == (2, 3)
        out.sum().backward()


def test_rebuilding_from_json_gives_the_same_parameter_count():
    space = NASNetSpace()
    arch = space.sample(np.random.default_rng(11))
    again = space.loads(space.dumps(arch))
    cfg = dict(num_classes=10, num_cells=2, num_filters=12)
    assert count_params(space.build(arch, **cfg)) == count_params(space.build(again, **cfg))


def test_scheduled_drop_path_ramps_with_progress_and_depth():
    model = create("nasnet_a_cifar", num_cells=1, num_filters=8)  # keep prob 0.6
    rates = lambda: [[m.rate for m in c.modules() if isinstance(m, DropPath)][0] for c in model.cells]
    assert all(r == 0 for r in rates())
    model.set_drop_path_progress(0.5)
    half = rates()
    model.set_drop_path_progress(1.0)
    full = rates()
    assert full == pytest.approx([(k + 1) / 5 * 0.4 for k in range(5)])
    assert half == pytest.approx([r / 2 for r in full])
    model.set_drop_path_progress(2.0)
    assert rates() == full


def test_drop_path_is_identity_in_eval_and_unbiased_in_training():
    torch.manual_seed(0)
    d = DropPath(0.3)
    x = torch.ones(20000, 1)
    d.train()
    y = d(x)
    assert len(torch.unique(y)) == 2 and torch.unique(y)[1].item() == pytest.approx(1 / 0.7)
    assert abs(y.mean().item() - 1) < 0.03
    d.eval()
    assert torch.equal(d(x), x)



@pytest.mark.parametrize("size", [(8, 8), (9, 9), (6, 7), (1, 1)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_factorized_reduce_reads_the_even_and_the_shifted_odd_pixels(size, channels_last):
    """TF slim's factorized_reduction: path 1 convolves pixels (2i, 2j), path 2 pixels
    (2i + 1, 2j + 1) with zeros past an odd-sized edge; BN over both halves. Values and gradients."""
    torch.manual_seed(0)
    module = FactorizedReduce(3, 4).train()
    x = torch.randn(2, 3, *size)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    shifted = torch.zeros_like(x)
    shifted[:, :, :-1, :-1] = torch.relu(x)[:, :, 1:, 1:]
    halves = [torch.einsum("oc,nchw->nohw", conv.weight[:, :, 0, 0], src[:, :, ::2, ::2])
              for conv, src in ((module.path1, torch.relu(x)), (module.path2, shifted))]
    expected = torch.nn.functional.batch_norm(torch.cat(halves, 1), None, None, module.bn.weight, module.bn.bias,
                                              training=True, eps=module.bn.eps)
    out = module(x)
    assert out.shape == (2, 4, (size[0] + 1) // 2, (size[1] + 1) // 2)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(out)
    wanted = torch.autograd.grad(expected, [x, module.path1.weight, module.path2.weight], grad)
    got = torch.autograd.grad(out, [x, module.path1.weight, module.path2.weight], grad)
    for a, b in zip(got, wanted):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)

def _cheap(name):
    """A registered model at an export-cheap size: NASNets at N=1, F=8; EfficientNets at their own
    width with one block per stage (the same block types, far fewer graph nodes)."""
    spec = get_model_spec(name)
    if spec.family == "nasnet":
        resolution = 32 if spec.resolution <= 32 else 64
        return create(name, num_classes=5, resolution=resolution, num_cells=1, num_filters=8), resolution
    return create(name, num_classes=5, resolution=32, depth_mult=0.1), 32


def _exports_with_a_dynamic_batch(model, x):
    """torch.export the eval-mode `model` on `x`; the program runs a batch of another size as the model does."""
    model = model.eval()
    with deprecations_are_errors():
        program, dynamic = to_exported_program(model, x)
    assert dynamic, "the batch dimension should be dynamic"
    other = torch.randn(x.shape[0] + 1, *x.shape[1:])
    with torch.no_grad():
        torch.testing.assert_close(program.module()(other), model(other), rtol=1e-5, atol=1e-5)


def _structure(model):
    """What an export depends on, beyond widths: the module types in order and every op's settings."""
    return [(type(m).__name__, getattr(m, "kernel_size", None), getattr(m, "stride", None),
             getattr(m, "dilation", None), getattr(m, "padding", None)) for m in model.modules()]


#: One registered model of each structure at the `_cheap` size; every other registered model is the
#: same network there (NASNet-A Mobile and Large at N=1, F=8; the EfficientNets at one block per stage).
EXPORTED_MODELS = ["amoebanet_a_cifar", "darts_v2_cifar", "efficientnet_b0", "nasnet_a_cifar", "nasnet_a_mobile"]


def test_every_registered_model_has_the_structure_of_an_exported_one():
    structures = {name: _structure(_cheap(name)[0]) for name in list_models()}
    exported = [structures[name] for name in EXPORTED_MODELS]
    assert [name for name, structure in structures.items() if structure not in exported] == []


@pytest.mark.parametrize("name", EXPORTED_MODELS)
def test_registered_models_export_with_torch_export(name):
    torch.manual_seed(0)
    model, r = _cheap(name)
    _exports_with_a_dynamic_batch(model, torch.randn(2, 3, r, r))


#: A search space's network as `nasforge search` builds it, cheaper where the default is large.
SEARCH_NETWORKS = {"nb201": {"channels": 8, "cells_per_stage": 1},
                   "macro": {"stem_channels": 8, "stage_channels": (16, 16, 32), "head_channels": 64}}


def _every_op_cells():
    """A NASNet-space cell pair that uses all 13 ops (some twice) and both combiners."""
    ops = list(OP_NAMES) * 2

    def cell(first):
        return {"blocks": [{"inputs": [j + 1, j], "ops": ops[first + 2 * j:first + 2 * j + 2],
                            "combine": COMBINERS[j % 2]} for j in range(5)]}

    return {"space": "nasnet", "normal": cell(0), "reduction": cell(10)}


def _search_network(space_name, in_channels=1, resolution=16):
    """A network of the space at `nasforge search`'s settings: a sampled architecture (NASNet: one
    with every op, which covers more than any sample)."""
    space = SPACES[space_name]()
    arch = (space.from_json(_every_op_cells()) if space_name == "nasnet"
            else space.sample(np.random.default_rng(7)))
    network = {**space.proxy_network, **SEARCH_NETWORKS.get(space_name, {})}
    return space.build(arch, num_classes=10, in_channels=in_channels, resolution=resolution, **network)


def test_the_every_op_cells_use_every_op():
    arch = _every_op_cells()
    used = {op for cell in ("normal", "reduction") for block in arch[cell]["blocks"] for op in block["ops"]}
    assert used == set(OP_NAMES)


@pytest.mark.parametrize("space_name", sorted(SPACES))
def test_architectures_of_every_space_export_with_torch_export(space_name):
    torch.manual_seed(0)
    _exports_with_a_dynamic_batch(_search_network(space_name), torch.randn(2, 1, 16, 16))


class _Together(torch.nn.Module):
    """Several networks on one input, so that one (slow) ONNX export covers them all."""

    def __init__(self, nets):
        super().__init__()
        self.nets = torch.nn.ModuleList(nets)

    def forward(self, x):
        return tuple(net(x) for net in self.nets)


def test_the_onnx_exporter_takes_every_kind_of_network(tmp_path):
    """One ONNX export (`to_onnx`: torch.onnx.export(..., dynamo=True), as `nasforge export --format
    onnx` does) of an EfficientNet and sampled layer-wise and NB201 networks (tests/test_train_export.py
    exports NASNet cells; the Macro space's blocks are an EfficientNet's less SE), checked with
    onnxruntime on a batch of another size. Each ONNX export costs seconds, so they share one."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install -e '.[test]')")
    pytest.importorskip("onnxscript", reason="onnxscript not installed (torch.onnx's exporter needs it)")
    torch.manual_seed(0)
    nets = [_cheap("efficientnet_b0")[0]] + [_search_network(name, 3, 32) for name in ("layerwise", "nb201")]
    model = _Together(nets).eval()
    with deprecations_are_errors():
        assert to_onnx(model, torch.randn(2, 3, 32, 32), tmp_path / "all.onnx") is True  # a dynamic batch
    session = ort.InferenceSession(str(tmp_path / "all.onnx"), providers=["CPUExecutionProvider"])
    images = torch.randn(3, 3, 32, 32)
    outputs = session.run(None, {"input": images.numpy()})
    with torch.no_grad():
        expected = model(images)
    assert len(outputs) == len(expected) == 3
    for got, want in zip(outputs, expected):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)


def test_registry_errors():
    with pytest.raises(UnknownNameError, match="did you mean: nasnet_a_mobile"):
        create("nasnet_a_mobil")
    with pytest.raises(ConfigError, match="^model.depth: unknown option for model 'nasnet_a_cifar' \\(allowed: "):
        create("nasnet_a_cifar", depth=3)
    with pytest.raises(ConfigError, match="^stem: unknown stem 'vit' \\(allowed: cifar, imagenet\\)"):
        create("nasnet_a_cifar", stem="vit")
    with pytest.raises(ConfigError, match="num_filters"):
        create("nasnet_a_cifar", num_filters=30)


def test_architecture_build_validates_first():
    space = NASNetSpace(num_blocks=4)
    with pytest.raises(Exception, match="expected 4 blocks"):
        space.build(NASNET_A)
