import io

import numpy as np
import pytest
import torch

from nasforge.errors import ConfigError, UnknownNameError
from nasforge.models import create, get_model_spec, list_models
from nasforge.nn.layers import DropPath
from nasforge.profile import count_macs, count_params
from nasforge.spaces import NASNetSpace
from nasforge.spaces.nasnet_cells import NASNET_A

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


def test_models_trace_and_script_without_nasforge_at_runtime():
    model = create("nasnet_a_cifar", num_cells=1, num_filters=8).eval()
    x = torch.randn(1, 3, 32, 32)
    for exported in (torch.jit.trace(model, x), torch.jit.script(model)):
        buf = io.BytesIO()
        torch.jit.save(exported, buf)
        buf.seek(0)
        loaded = torch.jit.load(buf)
        torch.testing.assert_close(loaded(x), model(x))


def test_registry_errors():
    with pytest.raises(UnknownNameError, match="did you mean: nasnet_a_mobile"):
        create("nasnet_a_mobil")
    with pytest.raises(ConfigError, match="^depth: not an option of model 'nasnet_a_cifar' \\(allowed: "):
        create("nasnet_a_cifar", depth=3)
    with pytest.raises(ConfigError, match="^stem: unknown stem 'vit' \\(allowed: cifar, imagenet\\)"):
        create("nasnet_a_cifar", stem="vit")
    with pytest.raises(ConfigError, match="num_filters"):
        create("nasnet_a_cifar", num_filters=30)


def test_architecture_build_validates_first():
    space = NASNetSpace(num_blocks=4)
    with pytest.raises(Exception, match="expected 4 blocks"):
        space.build(NASNET_A)
