"""Distributed training on CPU with torchrun and gloo: the same weights on 1 or 2 processes, two nodes on loopback,
and exact resume after a kill, all through ``dlcourse train``.

The equality holds because `dlcourse.train.fit` seeds micro-batch k of step s from (seed, s, k) alone: with
``train.micro_batches=2`` one process runs both micro-batches (gradient accumulation) and two processes run one
each, and DDP's all-reduce gives the same mean gradient up to float summation order (tolerance 1e-5 relative).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
TINY = {
    "sde": ["--preset", "digits", "--set", "width=8", "--set", "depth=1", "--set", "channel_mults=[1]",
            "--set", "attn_resolutions=[]", "--set", "train.batch_size=8", "--set", "train.warmup=0"],
    "mdlm": ["--preset", "toy", "--set", "model.dim=16", "--set", "model.n_layers=1", "--set", "model.n_heads=2",
             "--set", "train.batch_size=8", "--set", "eval_windows=0", "--set", "seq_len=12"],
}
COMMON = ["--set", "train.micro_batches=2", "--set", "train.progress=false", "--set", "train.log_every=5",
          "--set", "train.ckpt_every=5", "--device", "cpu"]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(family: str, out: Path, steps: int, procs: int = 1, extra: list[str] = ()) -> subprocess.CompletedProcess:
    args = ["-m", "dlcourse", "train", family, *TINY[family], *COMMON, "--set", f"train.steps={steps}",
            "--out", str(out), *extra]
    if procs == 1:
        cmd = [sys.executable, *args]
    else:
        cmd = [*TORCHRUN, "--nproc-per-node", str(procs), "--master-addr", "127.0.0.1", "--master-port",
               str(_free_port()), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "ckpt.pt", weights_only=True)["model"]


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6), (k, (a[k] - b[k]).abs().max())


@pytest.mark.parametrize("family", ["sde", "mdlm"])
def test_two_processes_give_the_weights_of_one(family, tmp_path):
    one = tmp_path / "one"
    _train(family, one, 20)
    two = tmp_path / "two"
    r = _train(family, two, 20, procs=2)
    _assert_same(_weights(one), _weights(two))
    # rank 0 alone wrote the run folder's metrics (one line per log step, not two)
    assert len((two / "metrics.jsonl").read_text().splitlines()) == 4
    assert r.stdout.count("trained 20 steps") == 1


def test_two_nodes_on_loopback(tmp_path):
    port = _free_port()
    args = ["-m", "dlcourse", "train", "mdlm", *TINY["mdlm"], *COMMON, "--set", "train.steps=6",
            "--out", str(tmp_path / "run")]
    procs = [subprocess.Popen([*TORCHRUN, "--nnodes", "2", "--node-rank", str(rank), "--nproc-per-node", "1",
                               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
                               "--rdzv-id", "dlcourse-test", *args],
                              cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)["step"] == 6
    _assert_same(_weights(tmp_path / "run"), _weights(_single(tmp_path, 6)))


def _single(tmp_path: Path, steps: int) -> Path:
    out = tmp_path / f"single-{steps}"
    _train("mdlm", out, steps)
    return out


def test_killed_ddp_run_resumes_to_the_uninterrupted_weights(tmp_path):
    run = tmp_path / "run"
    args = ["-m", "dlcourse", "train", "sde", *TINY["sde"], *COMMON, "--set", "train.steps=100000", "--out", str(run)]
    proc = subprocess.Popen([*TORCHRUN, "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port",
                             str(_free_port()), *args], cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 240
        while not (run / "ckpt.pt").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert (run / "ckpt.pt").exists(), "no checkpoint appeared"
    finally:
        # the launcher and both workers, mid-step (torchrun starts its workers in sessions of their own)
        subprocess.run(["pkill", "-9", "-f", "--", f"--out {run}"], check=False)
        proc.wait()
        while subprocess.run(["pgrep", "-f", "--", f"--out {run}"], capture_output=True).returncode == 0:
            time.sleep(0.1)
    step = torch.load(run / "ckpt.pt", weights_only=True)["step"]
    assert step >= 5 and step % 5 == 0
    _train("sde", run, step + 10, procs=2, extra=["--resume"])
    straight = tmp_path / "straight"
    _train("sde", straight, step + 10, procs=2)
    _assert_same(_weights(run), _weights(straight))


def test_evaluation_splits_its_work_across_processes(tmp_path):
    # bits per point of the shipped toy model through the ODE: each process takes half the points and rank 0 reports
    # the gathered mean, the single-process value up to the adaptive solver's tolerance (its steps depend on the batch)
    import json as _json

    args = ["-m", "dlcourse", "eval", "sde", "--checkpoint", "sde_toy", "--bpd", "--samples", "64", "--json", "--device", "cpu"]
    one = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, env=_env(), timeout=300)
    two = subprocess.run([*TORCHRUN, "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port",
                          str(_free_port()), *args], capture_output=True, text=True, cwd=REPO, env=_env(), timeout=300)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    a = _json.loads(one.stdout.strip().splitlines()[-1])
    lines = [line for line in two.stdout.strip().splitlines() if line.startswith("{")]
    assert len(lines) == 1  # rank 0 alone reports
    b = _json.loads(lines[0])
    assert a["n"] == b["n"] == 64 and abs(a["nll_nats"] - b["nll_nats"]) < 2e-3, (a, b)
