"""Red team: adversarial submissions, each graded to at most the honest score of the untouched student version (0),
with the master, solutions/, the other submissions and the output folder byte-identical, nothing written outside
the worker's scratch, no hidden-test line in any report and no process left behind.

Attacks run where they must fail: "sandbox" (bubblewrap, the production setting for --hidden and folders; skipped
where bwrap cannot run) and, for those the worker's Python-level hardening must stop on its own, "host" (graded
without a sandbox). Each attack ends by raising "ATTACK-DONE <outcomes>", which the tests require in the report:
an attack that did not run to its end proves nothing. See tests/grading_fixtures/attacks.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from pathlib import Path

import pytest

from dlcourse.cli import main
from dlcourse.grading import sandbox
from dlcourse.grading.cli import hidden_texts
from dlcourse.grading.grader import Grader, format_table, write_result
from dlcourse.grading.submission import SubmissionError

ROOT = Path(__file__).resolve().parents[1]


from grading_fixtures import a0_submissions as subs  # noqa: E402
from grading_fixtures import attacks  # noqa: E402

SANDBOX_OK = sandbox.status().usable
needs_sandbox = pytest.mark.skipif(not SANDBOX_OK, reason=f"bubblewrap cannot run here: {sandbox.status().reason}")
HIDDEN = hidden_texts()
MASTER_NB = ROOT / "solutions" / "a0_sampling.ipynb"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): _sha(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def _processes_with(token: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        for what in ("cmdline", "comm"):
            try:
                data = Path(f"/proc/{entry}/{what}").read_bytes()
            except OSError:
                continue
            if token.encode()[:15] in data:
                found.append(f"{entry}: {data[:120]!r}")
                break
    return found


class Stage:
    """A hand-in folder (an honest, complete victim and the attacker), an output folder holding the victim's
    grades, a folder that must stay empty, and a token that marks the attacker's processes."""

    def __init__(self, tmp_path: Path):
        self.root = tmp_path
        self.folder = tmp_path / "hand-in"
        self.folder.mkdir()
        self.out = tmp_path / "grades"
        self.out.mkdir()
        self.outside = tmp_path / "outside"
        self.outside.mkdir()
        self.victim = self.folder / "victim.ipynb"
        self.victim.write_text(subs.build(), encoding="utf-8")
        (self.out / "victim.json").write_text('{"score": 10}\n')
        self.attacker = self.folder / "attacker.ipynb"
        self.token = "rt" + uuid.uuid4().hex[:12]
        self.canaries = [ROOT / "dlcourse" / f"pwned-{self.token}.py", ROOT / "solutions" / f"pwned-{self.token}.py",
                         ROOT / f"pwned-{self.token}", Path(f"/var/tmp/pwned-{self.token}"),
                         Path(f"/dev/shm/{self.token}")]
        self.before = self.snapshot()

    def paths(self, **extra) -> dict:
        return {**dict(master=str(subs.MASTER), master_nb=str(MASTER_NB), solutions=str(ROOT / "solutions"),
                       victim=str(self.victim), out=str(self.out), outside=str(self.outside), repo=str(ROOT),
                       token=self.token, port=0, secret_name=""), **extra}

    def snapshot(self) -> dict:
        return {"solutions": _tree(ROOT / "solutions"), "victim": _sha(self.victim),
                "out": {k: v for k, v in _tree(self.out).items() if not k.startswith("attacker.")},
                "outside": _tree(self.outside)}

    def grade(self, text: str, mode: str, **kwargs):
        self.attacker.write_text(text, encoding="utf-8")
        grader = Grader(hidden=True, protect=[self.folder, self.out], sandbox="required" if mode == "sandbox" else
                        "off", time_limit=kwargs.pop("time_limit", 8.0), cell_time_limit=kwargs.pop("cell_time_limit",
                                                                                                     40.0),
                        prefetch=True, **kwargs)
        result = grader.grade(self.attacker)
        write_result(result, self.out)  # as `dlcourse grade FOLDER --out` does
        self.result = result
        self.report = (format_table(result) + json.dumps(result.to_dict()) + (self.out / "attacker.csv").read_text()
                       + (self.out / "attacker.json").read_text())
        return result

    def check(self, max_score: float = 0.0) -> None:
        r = self.result
        assert r.score <= max_score, [(q.id, q.status, q.message) for q in r.questions]
        assert self.snapshot() == self.before, "a protected file or folder changed"
        for canary in self.canaries:
            assert not canary.exists(), f"the attack wrote {canary}"
        leaked = [line for line in HIDDEN if line in self.report]
        assert not leaked, f"hidden-test lines in the report: {leaked[:2]}"
        written = (self.out / "attacker.json").read_text()
        deadline = time.monotonic() + 3.0
        while _processes_with(self.token) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _processes_with(self.token) == [], "a process of the submission outlived its grading"
        time.sleep(0.5)
        assert (self.out / "attacker.json").read_text() == written, "something rewrote the grades after grading"


@pytest.fixture
def stage(tmp_path):
    return Stage(tmp_path)


def _modes(modes):
    out = []
    for m in modes:
        marks = [needs_sandbox] if m == "sandbox" else []
        out.append(pytest.param(m, marks=marks, id=m))
    return out


CASES = [pytest.param(name, mode, marks=([needs_sandbox] if mode == "sandbox" else []), id=f"{name}-{mode}")
         for name, (_, _, _, modes) in attacks.ATTACKS.items() for mode in modes]


@pytest.mark.parametrize("name, mode", CASES)
def test_attack_cell(stage, name, mode, monkeypatch):
    kind, body, unhook, _ = attacks.ATTACKS[name]
    extra = {}
    server = None
    if name == "unhooked_network":
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(5)
        server.setblocking(False)
        extra["port"] = server.getsockname()[1]
    secret = f"s3cret-{stage.token}"
    monkeypatch.setenv("DLCOURSE_REDTEAM_SECRET", secret)  # the grader's environment must not reach the report
    cell = attacks.attack_cell(body, unhook=unhook, **stage.paths(**{k: v for k, v in extra.items()}))
    text = subs.build(extra_cells=[("end", cell)], solved=False)
    result = stage.grade(text, mode)
    if name == "unhooked_kills_its_zygote":
        # the worker dies with its zygote (the attack waits 10 s for that); the grader restarts the submission in a
        # fresh sandbox and goes on. "error" would mean the worker outlived its zygote and replied
        assert [c.status for c in result.cells if "os, sys, json" in c.message] == ["crashed"], \
            [c.message for c in result.cells]
        assert [q.status for q in result.questions] == ["not implemented"] * 5
    else:
        assert "ATTACK-DONE" in stage.report, [c.message for c in result.cells]
    if unhook and name != "unhooked_kills_its_zygote":
        assert "UNHOOKED" in stage.report, "the exploit no longer switches the hook off: the test proves nothing"
    assert "LEAKED" not in stage.report
    assert secret not in stage.report
    stage.check()
    if server is not None:
        with pytest.raises(BlockingIOError):
            server.accept()
        server.close()
    outcome = " ".join(c.message for c in result.cells)
    if name == "unhooked_fills_scratch":
        assert "stopped after" in outcome  # the 256 MiB scratch is full long before 1.6 GB
    if name == "scratch_quota":
        mib = int(outcome.split("QUOTA stopped after ")[1].split(" MiB")[0])
        assert mib <= 256
    if name == "unhooked_environment":
        for forbidden in ("s3cret", "DLCOURSE_REDTEAM"):
            assert forbidden not in outcome
    if name == "terminal_injection":
        table = format_table(result)
        assert "\x1b" not in table and "\r" not in table
        assert not [line for line in table.splitlines() if line.startswith("total") and "10/10" in line]
    if mode == "sandbox":
        assert result.sandbox.startswith("bubblewrap")
    else:
        assert any("graded without a sandbox" in n for n in result.notes)


@pytest.mark.parametrize("name", list(attacks.FUNCTION_ATTACKS))
@pytest.mark.parametrize("mode", _modes(("sandbox", "host")))
def test_attack_functions(stage, name, mode):
    text = subs.build(attacks.FUNCTION_ATTACKS[name], solved=False)
    t0 = time.monotonic()
    result = stage.grade(text, mode, time_limit=4.0)
    stage.check()
    q = {x.id: x for x in result.questions}
    if name == "outlier_widens_error_bars":
        assert q["q2_gaussian"].status == "failed" and "covariance" in q["q2_gaussian"].message
        assert q["q3_mixture"].status == "failed"
    if name == "forged_huge_reply":
        assert "could not read what your code sent back" in q["q1_components"].message
        assert q["q1_components"].seconds < 4.0 + 2.0  # refused within the limit, not parsed at leisure
    assert time.monotonic() - t0 < 120


# --------------------------------------------------------------------------------------------------------------
# the notebook's metadata used as a path; links; easier assignments


def _evil_master(folder: Path, canary: Path) -> Path:
    """A notebook that would be a master whose setup cell (run in the trusted grader) writes ``canary``."""
    text = subs.MASTER.read_text().replace(
        "# %% tags=[\"grading-setup\"]\nimport math\n",
        f"# %% tags=[\"grading-setup\"]\nimport math\nopen({str(canary)!r}, 'w').write('ran in the grader')\n")
    path = folder / "evil.py"
    path.write_text(text)
    return path


def _with_name(name) -> str:
    nb = json.loads(subs.build(solved=False))
    nb["metadata"]["dlcourse"]["assignment"] = name
    return json.dumps(nb)


@pytest.mark.parametrize("how", ["absolute", "dotdot", "not_a_string", "with_slash"])
def test_assignment_name_is_never_a_path(stage, how):
    canary = stage.outside / "setup-ran.txt"
    evil = _evil_master(stage.folder, canary)
    name = {"absolute": str(evil.with_suffix("")), "dotdot": "../" * 12 + str(evil.with_suffix("")).lstrip("/"),
            "not_a_string": ["a0_sampling"], "with_slash": "a0_sampling/../a0_sampling"}[how]
    stage.attacker.write_text(_with_name(name))
    with pytest.raises(SubmissionError, match="not a plain name|not a name"):
        Grader(hidden=True, sandbox="auto").grade(stage.attacker)
    # in a folder run: the attacker's row says why, the victim is graded
    evil.unlink()
    code = main(["grade", str(stage.folder), "--hidden", "--out", str(stage.out), "--no-sandbox", "--master",
                 str(subs.MASTER), "--timeout", "8"])
    assert code == 0
    assert not canary.exists()
    row = (stage.out / "attacker.csv").read_text()
    assert ",error," in row and "not a plain name" in row or "not a name" in row
    assert json.loads((stage.out / "victim.json").read_text())["score"] == 10


def test_folder_naming_an_easier_assignment_is_refused(stage, capsys):
    stage.attacker.write_text(_with_name("a1_score_matching"))
    code = main(["grade", str(stage.folder), "--hidden", "--out", str(stage.out), "--no-sandbox"])
    assert code == 2
    assert "name different assignments" in capsys.readouterr().err
    assert stage.snapshot() == stage.before  # nothing graded, nothing written


def test_symlinked_submission_is_refused(stage):
    link = stage.folder / "linked.ipynb"
    link.symlink_to(MASTER_NB)  # the executed master: it would score 10/10
    with pytest.raises(SubmissionError, match="symbolic link"):
        Grader(hidden=True, sandbox="auto").grade(link)
    stage.attacker.write_text(subs.build(solved=False))
    assert main(["grade", str(stage.folder), "--hidden", "--out", str(stage.out), "--no-sandbox",
                 "--timeout", "8"]) == 0
    row = (stage.out / "linked.csv").read_text()
    assert ",error," in row and "symbolic link" in row and ",total,0," in row
    link.unlink()


# --------------------------------------------------------------------------------------------------------------
# budgets


REPLAY_BOMB = [("end", "import time\ntime.sleep(1.0)")] * 6 + [("end", "import os\nos._exit(3)")] * 8


def test_replay_bomb_is_bounded(stage):
    """Every crash replays the cells that ran before; capped restarts and a budget keep the total bounded."""
    text = subs.build(extra_cells=REPLAY_BOMB, solved=False)
    mode = "sandbox" if SANDBOX_OK else "host"
    t0 = time.monotonic()
    result = stage.grade(text, mode, budget=25.0, cell_time_limit=5.0)
    elapsed = time.monotonic() - t0
    stage.check()
    assert elapsed < 25.0 + 25.0, elapsed  # the budget, plus starting the worker (not counted) and the tests
    crashed = [c for c in result.cells if c.status == "crashed"]
    assert 1 <= len(crashed) <= 8
    assert any(c.status == "budget" for c in result.cells) or len(crashed) <= 7


def test_infinite_loops_everywhere_are_bounded_by_the_budget(stage):
    loops = {gid: f"def {fn}(*args, **kwargs):\n    while True:\n        pass" for gid, fn in
             [("sample_components", "sample_components"), ("sample_gaussian", "sample_gaussian"),
              ("sample_mixture", "sample_mixture"), ("log_prob", "log_prob"), ("score", "score")]}
    text = subs.build(loops, extra_cells=[("end", "while True:\n    pass")], solved=False)
    mode = "sandbox" if SANDBOX_OK else "host"
    t0 = time.monotonic()
    result = stage.grade(text, mode, budget=12.0, time_limit=3.0, cell_time_limit=6.0)
    assert time.monotonic() - t0 < 12.0 + 25.0
    stage.check()
    statuses = [q.status for q in result.questions]
    assert statuses.count("timeout") == 5
    assert any("time budget" in q.message for q in result.questions)


@pytest.mark.parametrize("how", ["dict_source", "list_metadata", "hundred_thousand_cells", "huge_cell"])
def test_malformed_notebooks_get_a_row_not_an_abort(stage, how):
    nb = json.loads(subs.build(solved=False))
    if how == "dict_source":
        nb["cells"][3]["source"] = {"not": "text"}
    elif how == "list_metadata":
        nb["metadata"]["dlcourse"] = ["a0_sampling"]
    elif how == "hundred_thousand_cells":
        nb["cells"] = [{"cell_type": "code", "source": "x = 1", "metadata": {}, "outputs": []}] * 100_000
    else:
        nb["cells"].append({"cell_type": "code", "source": "x = 1\n" * 400_000, "metadata": {}, "outputs": []})
    stage.attacker.write_text(json.dumps(nb))
    t0 = time.monotonic()
    code = main(["grade", str(stage.folder), "--hidden", "--out", str(stage.out), "--no-sandbox", "--master",
                 str(subs.MASTER), "--timeout", "8"])
    assert code == 0
    assert time.monotonic() - t0 < 120
    row = (stage.out / "attacker.csv").read_text()
    assert ",error," in row and ",total,0,10" in row, row
    assert json.loads((stage.out / "victim.json").read_text())["score"] == 10


def test_a_py_export_whose_header_is_a_yaml_payload_runs_nothing(stage):
    canary = stage.outside / "yaml-ran"
    evil = stage.folder / "evil.py"
    evil.write_text("# ---\n# jupyter:\n#   dlcourse: !!python/object/apply:os.system\n#   - touch " + str(canary)
                    + "\n# ---\n\n# %%\nx = 1\n")
    with pytest.raises(SubmissionError) as info:
        Grader(sandbox="auto").grade(evil)
    assert "\n" not in str(info.value) and "could not be read" in str(info.value)
    assert not canary.exists()
