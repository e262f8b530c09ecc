"""Checkpoints load without unpickling code, fail in one line when bad, and are never silently overwritten."""

import json
import pickle

import pytest
import torch
from torch import nn

from dlcourse.checkpoint import (export_weights, load_state_into, load_training_state, load_weights,
                                 save_training_state, sha256_file)
from dlcourse.errors import CheckpointError


def _state():
    return {"model": nn.Linear(2, 3).state_dict(), "step": 5, "meta": {"kind": "ncsn"}}


def test_training_state_round_trip(tmp_path):
    state = _state()
    save_training_state(tmp_path / "ckpt.pt", state)
    back = load_training_state(tmp_path / "ckpt.pt", kind="ncsn")
    assert back["step"] == 5 and torch.equal(back["model"]["weight"], state["model"]["weight"])
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_training_state_is_one_line_error(tmp_path, damage):
    path = tmp_path / "ckpt.pt"
    save_training_state(path, _state())
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a checkpoint" * 10, "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
        load_training_state(path)
    assert "\n" not in str(info.value)


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "step": 0, "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_training_state(path)


def test_wrong_kind_and_missing_file(tmp_path):
    save_training_state(tmp_path / "ckpt.pt", _state())
    with pytest.raises(CheckpointError, match="holds a 'ncsn' model, not 'sde'"):
        load_training_state(tmp_path / "ckpt.pt", kind="sde")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_training_state(tmp_path / "nope.pt")


def test_exported_weights_round_trip_and_no_overwrite(tmp_path):
    model = nn.Linear(2, 3)
    path = export_weights(tmp_path / "m.safetensors", model.state_dict(), {"kind": "ncsn", "config": {"width": 3}})
    tensors, meta = load_weights(path, kind="ncsn")
    assert meta["config"] == {"width": 3}
    other = nn.Linear(2, 3)
    load_state_into(other, tensors)
    assert torch.equal(other.weight, model.weight)
    digest = sha256_file(path)
    with pytest.raises(CheckpointError, match="refusing to overwrite"):
        export_weights(path, nn.Linear(2, 3).state_dict(), {"kind": "ncsn"})
    assert sha256_file(path) == digest


def test_exported_weights_errors(tmp_path):
    path = export_weights(tmp_path / "m.safetensors", nn.Linear(2, 3).state_dict(), {"kind": "ncsn"})
    with pytest.raises(CheckpointError, match="holds a 'ncsn' model, not 'mdlm'"):
        load_weights(path, kind="mdlm")
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_state_into(nn.Linear(2, 4), load_weights(path)[0])
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_weights(path)
    (tmp_path / "p.safetensors").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_weights(tmp_path / "p.safetensors")


def test_export_into_the_shipped_folder_is_recorded_once_with_a_clean_command(tmp_path, monkeypatch):
    import dlcourse.checkpoint as ck
    from dlcourse.config import TrainConfig
    from dlcourse.registry import RunOptions, export_trained

    cfg = TrainConfig(steps=3)
    shipped = tmp_path / "checkpoints"
    shipped.mkdir()
    monkeypatch.setattr(ck, "SHIPPED_DIR", shipped.resolve())
    monkeypatch.setattr(ck, "MANIFEST", shipped.resolve() / "manifest.json")
    described = []

    def describe():
        described.append(True)
        return "a test model", "no data"

    state = {"w": torch.ones(2)}
    elsewhere = RunOptions(out_dir=tmp_path / "run", resume=False, device="cpu", export=tmp_path / "mine.safetensors",
                           command="dlcourse train ncsn --resume --out run")
    export_trained(elsewhere, "ncsn", cfg, state, {"loss": 1.0}, describe)
    assert (tmp_path / "mine.safetensors").exists() and not described  # not shipped: no manifest entry
    run = RunOptions(out_dir=tmp_path / "run", resume=True, device="cpu", export=shipped / "toy.safetensors",
                     command="dlcourse train ncsn --resume --out run")
    export_trained(run, "ncsn", cfg, state, {"loss": 1.0}, describe)
    entry = ck.read_manifest()["toy"]
    assert entry["kind"] == "ncsn" and entry["what"] == "a test model" and entry["metrics"] == {"loss": 1.0}
    assert entry["config"]["steps"] == 3
    assert entry["command"] == "dlcourse train ncsn --out run"  # --resume dropped: resuming is exact
    assert entry["sha256"] == ck.sha256_file(shipped / "toy.safetensors")
    # two evaluations keep their own metrics and commands; a new record of one replaces only that one
    ck.update_manifest_metrics("toy", "bpd", {"test_bpd": 2.5, "n": 100.0}, "dlcourse eval sde --bpd --record")
    ck.update_manifest_metrics("toy", "quality", {"fid": 3.0, "n": 1000.0}, "dlcourse eval sde --quality --record")
    ck.update_manifest_metrics("toy", "bpd", {"test_bpd": 2.4, "n": 200.0}, "dlcourse eval sde --bpd --n 200 --record")
    entry = ck.read_manifest()["toy"]
    assert entry["evals"] == {"bpd": {"test_bpd": 2.4, "n": 200.0, "command": "dlcourse eval sde --bpd --n 200 --record"},
                              "quality": {"fid": 3.0, "n": 1000.0, "command": "dlcourse eval sde --quality --record"}}
    assert entry["metrics"] == {"loss": 1.0}
    with pytest.raises(ck.CheckpointError, match="shipped checkpoints only"):
        ck.update_manifest_metrics("nope", "bpd", {}, "x")



def _record_many(worker: int) -> None:
    import dlcourse.checkpoint as ck

    for k in range(10):
        ck.update_manifest_metrics("toy", f"eval {worker}.{k}", {"k": float(k)}, "dlcourse eval")


def test_records_written_at_once_by_several_processes_are_all_kept(tmp_path, monkeypatch):
    """Four processes each record ten evaluations of one checkpoint at the same time: without the manifest's lock
    their read-modify-writes interleave and records are lost."""
    import multiprocessing

    import dlcourse.checkpoint as ck

    shipped = tmp_path / "checkpoints"
    shipped.mkdir()
    monkeypatch.setattr(ck, "SHIPPED_DIR", shipped.resolve())
    monkeypatch.setattr(ck, "MANIFEST", shipped.resolve() / "manifest.json")
    ck.MANIFEST.write_text(json.dumps({"toy": {"file": "toy.safetensors"}}))
    ctx = multiprocessing.get_context("fork")  # the children keep the monkeypatched paths
    procs = [ctx.Process(target=_record_many, args=(w,)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert len(ck.read_manifest()["toy"]["evals"]) == 40

def test_bf16_export_halves_the_file_and_loads_back_into_float32(tmp_path):
    from dlcourse.nn import MLP

    model = MLP(2, hidden=32, num_blocks=2)
    state = model.state_dict()
    state_ref = {k: v.clone() for k, v in state.items()}
    full = export_weights(tmp_path / "full.safetensors", state, {"kind": "ncsn"})
    half = export_weights(tmp_path / "half.safetensors", state, {"kind": "ncsn"}, dtype="bfloat16")
    assert half.stat().st_size < 0.55 * full.stat().st_size
    stored, _ = load_weights(half)
    assert all(t.dtype == torch.bfloat16 for t in stored.values())
    again = MLP(2, hidden=32, num_blocks=2)
    load_state_into(again, stored)
    for k, v in again.state_dict().items():
        assert v.dtype == torch.float32
        assert torch.equal(v, state_ref[k].to(torch.bfloat16).float())  # exactly the rounded weights
        assert torch.allclose(v, state_ref[k], rtol=2 ** -8, atol=0)  # bf16 keeps 8 significant bits
    with pytest.raises(ValueError, match="dtype"):
        export_weights(tmp_path / "x.safetensors", state, {"kind": "ncsn"}, dtype="float16")
