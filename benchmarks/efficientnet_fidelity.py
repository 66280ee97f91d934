"""EfficientNet B0-B7 (B8, L2 with --all): parameters and MACs against the published figures.

    .venv/bin/python benchmarks/efficientnet_fidelity.py [--real] [--all]

Parameters must match torchvision/timm exactly; MACs (conv + linear, PyTorch's FLOP counter, at
each model's native resolution, 1000 classes) within 1% of the published counts. Models are built on the
meta device (shapes only) unless --real builds them with weights on the CPU. A second table puts
the published (width, depth, resolution) rows beside Eq. 3's alpha^phi, beta^phi, gamma^phi
(alpha, beta, gamma = 1.2, 1.1, 1.15) with the MACs each mode's members measure.
Writes benchmarks/results/efficientnet_fidelity.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

from nasforge.models import create  # noqa: E402
from nasforge.models.efficientnet import EFFICIENTNET_PARAMS  # noqa: E402
from nasforge.profile import count_macs, count_params  # noqa: E402
from nasforge.scaling import CompoundScaler, EfficientNetFamily, PublishedScaler  # noqa: E402

PUBLISHED = {  # params (torchvision/timm), GMACs at native resolution (Tan & Le 2019, Table 2)
    "efficientnet_b0": (5_288_548, 0.386), "efficientnet_b1": (7_794_184, 0.687),
    "efficientnet_b2": (9_109_994, 0.994), "efficientnet_b3": (12_233_232, 1.827),
    "efficientnet_b4": (19_341_616, 4.394), "efficientnet_b5": (30_389_784, 10.266),
    "efficientnet_b6": (43_040_704, 19.068), "efficientnet_b7": (66_347_960, 37.746),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="store_true", help="build with weights on the CPU instead of meta")
    parser.add_argument("--all", action="store_true", help="also B8 and L2 (no published figures)")
    args = parser.parse_args()
    device = "cpu" if args.real else "meta"
    names = list(EFFICIENTNET_PARAMS) if args.all else list(PUBLISHED)

    rows, records, ok = [], [], True
    for name in names:
        start = time.perf_counter()
        with torch.device(device):
            model = create(name)
        params, macs = count_params(model), count_macs(model, model.resolution)
        seconds = time.perf_counter() - start
        ref_params, ref_gmacs = PUBLISHED.get(name, (None, None))
        params_ok = ref_params is None or params == ref_params
        macs_err = None if ref_gmacs is None else macs / (ref_gmacs * 1e9) - 1
        macs_ok = macs_err is None or abs(macs_err) < 0.01
        ok &= params_ok and macs_ok
        rows.append([name, model.resolution, f"{params:,}", "-" if ref_params is None else f"{ref_params:,}",
                     f"{macs / 1e9:.3f}", "-" if ref_gmacs is None else f"{ref_gmacs:.3f}",
                     "-" if macs_err is None else f"{100 * macs_err:+.2f}%",
                     "ok" if params_ok and macs_ok else "MISMATCH", f"{seconds:.1f}"])
        records.append({"model": name, "resolution": model.resolution, "params": params, "macs": macs,
                        "published_params": ref_params, "published_gmacs": ref_gmacs,
                        "macs_rel_error": macs_err, "params_match": params_ok, "macs_within_1pct": macs_ok,
                        "seconds": seconds})
    print_table(f"EfficientNet fidelity (1000 classes, built on {device})",
                ["model", "res", "params", "published", "GMACs", "published", "MACs err", "check", "s"], rows)

    phis = list(range(8))
    formula = CompoundScaler(1.2, 1.1, 1.15).family(EfficientNetFamily(), phis, device=device, describe=False)
    published = PublishedScaler().family(EfficientNetFamily(), phis, device=device, describe=False)
    mode_rows, modes = [], []
    for f, p in zip(formula, published):
        mode_rows.append([int(f.phi), f"{p.width_mult:g} / {p.depth_mult:g} / {p.resolution}",
                          f"{f.width_mult:.3f} / {f.depth_mult:.3f} / {f.resolution}",
                          f"{p.macs / 1e9:.3f}", f"{f.macs / 1e9:.3f}", f"{p.macs_ratio:.2f}", f"{f.macs_ratio:.2f}",
                          f"{f.ideal_ratio:.2f}", f"{f.target_ratio:g}"])
        modes.append({"phi": f.phi, "published": p.to_dict(), "formula": f.to_dict()})
    print_table("published table vs Eq. 3 (alpha, beta, gamma = 1.2, 1.1, 1.15)",
                ["phi", "published w / d / r", "formula w / d / r", "pub GMACs", "formula GMACs",
                 "pub ratio", "formula ratio", "1.92^phi", "2^phi"], mode_rows)

    path = write_json("efficientnet_fidelity", {"device": device, "models": records, "modes": modes,
                                                "all_match": ok})
    print(f"wrote {path}; {'all figures match' if ok else 'MISMATCHES above'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
