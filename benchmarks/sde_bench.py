"""Score SDE benchmarks: sample quality versus NFE for predictor-only, corrector-only and predictor-corrector
sampling (and the probability-flow ODE), and the throughput of the likelihood computation.

The score is the exact one of a 2-D Gaussian mixture perturbed by the VP SDE (dlcourse.data.toy2d gives it in
closed form), so what is measured is the sampler, not a network's error. Quality: the weight of the big mode
(truth 0.8) and the energy distance to fresh samples of the mixture (0 for a perfect sampler; its noise floor at
this sample size is printed as the "exact samples" row). With ``--checkpoint`` the trained model is used instead.

    python benchmarks/sde_bench.py                      # the quality-vs-NFE table and likelihood throughput
    python benchmarks/sde_bench.py --checkpoint sde_toy # the same with the shipped toy model
    python benchmarks/sde_bench.py --part discretization   # VP's exact-OU chain against DDPM's table, exactly

``discretization``: the reverse-diffusion predictor with VP's two discrete chains (``VPSDE(discretization=...)``)
on Gaussian data N(0, 0.25) with its exact score; the output law is computed exactly (`dlcourse.sde.exact`), so
the relative error of its variance against p at the sampler's end time is the discretisation's own.

Each timing is taken twice and both are printed.
"""

from __future__ import annotations

import argparse
import time

import torch

from dlcourse.data.toy2d import GaussianMixture
from dlcourse.sde import VPSDE, log_likelihood, ode_sample, pc_sample


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """2 E|X - Y| - E|X - X'| - E|Y - Y'| (Székely & Rizzo 2013): 0 iff the laws agree."""
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


def timed(fn):
    times = []
    for _ in range(2):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, times


def discretization_table(var: float = 0.25) -> None:
    from dlcourse.sde.exact import gaussian_marginal, gaussian_output_law
    from dlcourse.sde.samplers import reverse_diffusion_step, time_grid

    print(f"# VP reverse-diffusion predictor on N(0, {var}) with its exact score: relative error of the output "
          f"variance (exact law)")
    print(f"{'steps':>6}{'exact-OU':>12}{'DDPM table':>12}")
    for steps in (5, 10, 20, 50, 100, 200, 1000):
        cells = []
        for how in ("exact", "ddpm"):
            sde = VPSDE(discretization=how)
            _, v = gaussian_output_law(sde, reverse_diffusion_step, steps, 0.0, var)
            times, dt = time_grid(sde, steps, dtype=torch.float64)
            _, v_true = gaussian_marginal(sde, (times[-1:] - dt).clamp(min=0), 0.0, var)
            cells.append("NaN" if v != v else f"{abs(v / float(v_true) - 1):.1%}")
        print(f"{steps:>6}{cells[0]:>12}{cells[1]:>12}")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="samples per run")
    ap.add_argument("--checkpoint", default=None, help="use a trained sde model instead of the exact score")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--part", nargs="+", default=["quality", "likelihood"],
                    choices=["quality", "likelihood", "discretization"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if "discretization" in args.part:
        discretization_table()
    if not {"quality", "likelihood"} & set(args.part):
        return
    mix = GaussianMixture([0.8, 0.2], [[5.0, 5.0], [-5.0, -5.0]], 1.0, dtype=torch.float64)
    if args.checkpoint:
        from dlcourse import load

        model, cfg = load(args.checkpoint)
        model = model.double()
        sde, score, what = model.sde, model, f"trained model {args.checkpoint}"
    else:
        sde = VPSDE()
        score = lambda x, t: mix.score(x, *sde.marginal_coeffs(t))  # noqa: E731
        what = "exact score of 0.8 N((5,5), I) + 0.2 N((-5,-5), I)"
    truth = mix.sample(args.n, generator=torch.Generator().manual_seed(1))
    print(f"# sampler quality vs NFE, VP SDE, {what}, n = {args.n}, {torch.get_num_threads()} thread(s)")
    print(f"{'sampler':<22}{'steps':>6}{'NFE':>6}{'big-mode weight':>17}{'energy dist':>13}{'seconds (x2)':>16}")
    floor = energy_distance(mix.sample(args.n, generator=torch.Generator().manual_seed(2)), truth)
    w = float((mix.sample(args.n, generator=torch.Generator().manual_seed(2)).sum(1) > 0).double().mean())
    print(f"{'exact samples':<22}{'':>6}{'':>6}{w:>17.3f}{floor:>13.4f}{'':>16}")
    for name, pred, corr in [("predictor only", "reverse_diffusion", "none"), ("corrector only", "none", "langevin"),
                             ("predictor-corrector", "reverse_diffusion", "langevin"),
                             ("Euler-Maruyama", "euler_maruyama", "none")]:
        for steps in (10, 30, 100, 300, 1000):
            run = lambda: pc_sample(sde, score, (args.n, 2), predictor=pred, corrector=corr, n_steps=steps,  # noqa: E731
                                    snr=0.16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
            res, secs = timed(run)
            wgt = float((res.x.sum(1) > 0).double().mean())
            print(f"{name:<22}{steps:>6}{res.nfe:>6}{wgt:>17.3f}{energy_distance(res.x, truth):>13.4f}"
                  f"{secs[0]:>8.2f}{secs[1]:>8.2f}")
    for tol in (1e-2, 1e-3, 1e-5):
        x_T = sde.prior_sample((args.n, 2), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        res, secs = timed(lambda: ode_sample(sde, score, x_T=x_T, rtol=tol, atol=tol))
        wgt = float((res.x.sum(1) > 0).double().mean())
        print(f"{f'ODE rtol={tol:g}':<22}{'':>6}{res.nfe:>6}{wgt:>17.3f}{energy_distance(res.x, truth):>13.4f}"
              f"{secs[0]:>8.2f}{secs[1]:>8.2f}")

    print("\n# likelihood through the probability-flow ODE (rtol = atol = 1e-5)")
    print(f"{'divergence':<14}{'points':>8}{'NFE':>6}{'mean NLL (nats)':>17}{'points/s (x2)':>18}")
    x = mix.sample(200, generator=torch.Generator().manual_seed(4))
    true_nll = float(-mix.log_prob(x).mean())
    for div in ("exact", "hutchinson"):
        res, secs = timed(lambda: log_likelihood(sde, score, x, divergence=div,
                                                 generator=torch.Generator().manual_seed(5)))
        print(f"{div:<14}{x.shape[0]:>8}{res.nfe:>6}{float(-res.logp.mean()):>17.4f}"
              f"{x.shape[0] / secs[0]:>9.1f}{x.shape[0] / secs[1]:>9.1f}")
    print(f"{'true':<14}{x.shape[0]:>8}{'':>6}{true_nll:>17.4f}")


if __name__ == "__main__":
    main()
