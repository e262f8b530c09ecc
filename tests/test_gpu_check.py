"""`benchmarks/gpu_check.py --tiny`: the GPU check's whole path on the CPU with tiny networks (the real run needs a
CUDA device and reports there); every family trains with bf16 autocast, stays finite, samples, and is written."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_gpu_check_runs_on_the_cpu_with_tiny_networks(tmp_path):
    out = tmp_path / "gpu_check.json"
    r = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--tiny", "--out", str(out)], cwd=REPO,
                       capture_output=True, text=True, timeout=600, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    report = json.loads(out.read_text())
    assert {row["family"] for row in report["families"]} == {"sde", "ncsn", "mdlm", "sedd", "ar", "bd3"}
    assert all(row["finite"] and row["sample_ok"] and row["tflop_per_step"] > 0 for row in report["families"])
    assert {row["sampler"] for row in report["frontier"]} == {"ar KV cache", "mdlm confidence", "bd3 confidence"}
    assert not report["errors"]


def test_dense_share_separates_matrix_work_from_elementwise_work():
    """scale_bench's Amdahl ceiling rests on `dense_share`: a chain of matrix multiplies is almost all dense time,
    a chain of elementwise ops none."""
    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    from scale_bench import dense_share

    a = torch.randn(256, 256)
    assert dense_share(lambda: [a @ a for _ in range(8)]) > 0.9
    assert dense_share(lambda: [(a * 2).exp().sin() for _ in range(8)]) == 0.0
