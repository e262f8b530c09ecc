"""Does storing a checkpoint's weights in bf16 (``dlcourse train ... --export-dtype bfloat16``) lose anything
measurable? The family's own evaluation, run twice with the same seeds: on the float32 weights, and on the same
weights rounded to bf16 and loaded back into the float32 model (what loading a bf16 export gives).

    python benchmarks/storage_bench.py eval ar --checkpoint runs/ar-topics --bpc
    python benchmarks/storage_bench.py eval sde --checkpoint runs/sde-fashion-vp --bpd --n 100
    python benchmarks/storage_bench.py eval classifier --checkpoint runs/classifier-fashion --accuracy

The arguments are those of ``dlcourse eval``; each metric is printed for both, with the difference. A difference
well inside the metric's own standard error (printed by the evaluation where it has one) is not measurable.
"""

from __future__ import annotations

import sys
import time

import torch

from dlcourse.cli import build_parser


def rounded(model: torch.nn.Module) -> torch.nn.Module:
    """The model with every float32 parameter and buffer rounded to bf16 (and kept in float32)."""
    state = {k: (v.to(torch.bfloat16).float() if v.dtype == torch.float32 else v) for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    return model


def main(argv: list[str]) -> None:
    args = build_parser(argv).parse_args(argv)
    if args.command != "eval":
        raise SystemExit("usage: storage_bench.py eval FAMILY --checkpoint PATH [eval options]")
    torch.set_num_threads(2)
    fam = args.fam
    results = {}
    for how in ("float32", "bf16-rounded"):
        model, cfg = fam.load(args.checkpoint, "cpu")
        if how != "float32":
            model = rounded(model)
        start = time.perf_counter()
        results[how] = fam.evaluate(model, cfg, args)
        print(f"# {how}: {time.perf_counter() - start:.0f} s", flush=True)
    print(f"# {fam.name} {args.checkpoint}: {' '.join(argv[2:])}")
    print(f"{'metric':<26}{'float32':>14}{'bf16-rounded':>14}{'difference':>14}")
    for key, value in results["float32"].items():
        other = results["bf16-rounded"].get(key)
        if isinstance(value, float) and isinstance(other, float):
            print(f"{key:<26}{value:>14.5g}{other:>14.5g}{other - value:>14.3g}")


if __name__ == "__main__":
    main(sys.argv[1:])
