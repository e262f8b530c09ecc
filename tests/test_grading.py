"""The grader end to end: masters score full marks, student versions 0, deliberate bugs lose exactly their points,
and adversarial submissions are graded correctly without touching their file or the results."""

import hashlib
import json
from pathlib import Path

import pytest

from dlcourse.cli import main
from dlcourse.grading import markers
from dlcourse.grading.cli import generate_assignments, hidden_texts, release
from dlcourse.grading.grader import Grader, write_result
from dlcourse.errors import DlcourseError

ROOT = Path(__file__).resolve().parents[1]
MASTERS = sorted(p for p in (ROOT / "solutions").glob("*.py") if not p.name.startswith("_"))

from grading_fixtures import a0_submissions as subs  # noqa: E402

FAST = dict(time_limit=3.0, cell_time_limit=4.0)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _grade(tmp_path, text, name="submission.ipynb", hidden=True, **kwargs):
    folder = tmp_path / "submissions"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    before = _sha(path)
    result = Grader(hidden=hidden, **{**FAST, **kwargs}).grade(path)
    assert _sha(path) == before, "the submission file was modified"
    assert result.sha256 == before
    return result


def _by_id(result):
    return {q.id: q for q in result.questions}


# --------------------------------------------------------------------------------------------------------------
# masters and student versions (every assignment in solutions/)


@pytest.mark.parametrize("master", MASTERS, ids=lambda p: p.stem)
def test_every_master_scores_full_marks(master, tmp_path):
    """With the hidden tests, and with every check's listed mistakes verified to be told apart by its data (a
    test that cannot tell two mistakes apart would diagnose one as the other)."""
    from dlcourse.grading.checks import lint_mistakes

    executed = master.with_suffix(".ipynb")
    assert executed.exists(), f"run `python -m dlcourse.notebooks execute {master}`"
    sub = tmp_path / executed.name
    sub.write_bytes(executed.read_bytes())
    with lint_mistakes():
        result = Grader(hidden=True).grade(sub)
    assert result.max_score > 0
    assert result.score == result.max_score, [(q.id, q.message) for q in result.questions if not q.passed]
    assert [c.message for c in result.cells if c.status != "ok"] == []


@pytest.mark.parametrize("master", MASTERS, ids=lambda p: p.stem)
def test_every_untouched_student_version_scores_zero(master, tmp_path):
    name = markers.load_assignment(master).name
    student = ROOT / "assignments" / f"{name}.ipynb"
    sub = tmp_path / student.name
    sub.write_bytes(student.read_bytes())
    result = Grader(hidden=True).grade(sub)
    assert result.score == 0 and result.max_score > 0
    for q in result.questions:
        assert q.status == "not implemented", (q.id, q.message)
        assert "not implemented yet" in q.message and "Traceback" not in q.message


def test_assignments_are_up_to_date():
    report = generate_assignments(write=False)
    stale = [(p.name, s) for p, s in report if s != "unchanged"]
    assert not stale, f"assignments/ is out of date, run `dlcourse assign`: {stale}"
    assert {p.name for p, _ in report} >= {f"{markers.load_assignment(m).name}.ipynb" for m in MASTERS}


def test_student_version_has_no_solution_or_hidden_test():
    text = (ROOT / "assignments" / "a0_sampling.ipynb").read_text(encoding="utf-8")
    for line in hidden_texts():
        assert line not in text
    for secret in ("### BEGIN", "searchsorted(cdf, u, right=True)", "z @ L.T", "torch.softmax(log_joint"):
        assert secret not in text
    nb = json.loads(text)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c.get("outputs", []) == [] and c.get("execution_count") is None for c in code)
    assert "def sample_components(weights, u):" in text and "Component indices by the inverse CDF" in text


# --------------------------------------------------------------------------------------------------------------
# deliberate bugs


def test_one_bug_per_question_loses_exactly_those_points(tmp_path):
    for gid, ((old, new), question, symptom) in subs.BUGS.items():
        # each bug alone: only its question fails, with a message naming the symptom
        result = _grade(tmp_path, subs.build(subs.with_bugs({gid: (old, new)})), name=f"bug_{gid}.ipynb")
        q = _by_id(result)
        failed = {k for k, v in q.items() if not v.passed}
        assert failed == {question}, (gid, {k: v.message for k, v in q.items() if not v.passed})
        assert symptom in q[question].message, (gid, q[question].message)
        assert result.score == result.max_score - q[question].max_points


def test_all_bugs_together_score_zero(tmp_path):
    result = _grade(tmp_path, subs.build(subs.with_bugs({g: b[0] for g, b in subs.BUGS.items()})))
    assert result.score == 0
    assert all(q.status == "failed" for q in result.questions)


def test_naive_numerics_pass_public_tests_and_fail_hidden_ones(tmp_path):
    text = subs.build(subs.with_bugs(subs.NAIVE))
    public = _grade(tmp_path, text, hidden=False)
    assert public.score == public.max_score
    hidden = _grade(tmp_path, text, name="again.ipynb", hidden=True)
    q = _by_id(hidden)
    assert {k for k, v in q.items() if not v.passed} == {"q4_log_prob", "q5_score"}
    assert "not finite" in q["q4_log_prob"].message and "-inf" in q["q4_log_prob"].message
    assert "not finite" in q["q5_score"].message and "NaN" in q["q5_score"].message


# --------------------------------------------------------------------------------------------------------------
# adversarial submissions: each graded correctly, the file untouched


def test_infinite_loops(tmp_path):
    text = subs.build({"sample_gaussian": subs.INFINITE_LOOP_FUNCTION}, [("start", subs.INFINITE_LOOP_CELL)])
    result = _grade(tmp_path, text)
    q = _by_id(result)
    assert q["q2_gaussian"].status == "timeout" and "took longer than 3 s" in q["q2_gaussian"].message
    assert {k for k, v in q.items() if not v.passed} == {"q2_gaussian"}
    assert any(c.status == "timeout" and "took longer than 4 s" in c.message for c in result.cells)


def test_exit_calls(tmp_path):
    text = subs.build({"sample_components": subs.SYS_EXIT_FUNCTION, "score": subs.OS_EXIT_FUNCTION},
                      [("start", subs.SYS_EXIT_CELL), ("start", subs.OS_EXIT_CELL)])
    result = _grade(tmp_path, text)
    q = _by_id(result)
    # q3 uses the student's own sample_components, so it fails with it
    assert {k for k, v in q.items() if not v.passed} == {"q1_components", "q3_mixture", "q5_score"}
    assert "SystemExit" in q["q1_components"].message
    assert q["q5_score"].status == "crashed"
    # the os._exit cell, the sys.exit cell, and the demo cell that calls sample_mixture -> sample_components
    statuses = sorted(c.status for c in result.cells)
    assert statuses == ["crashed", "error", "error"], [c.message for c in result.cells]
    assert "SystemExit: 3" in result.cells[1].message
    assert result.score == 4


def test_megabytes_of_output(tmp_path):
    text = subs.build({"sample_components": subs.HUGE_OUTPUT_FUNCTION}, [("start", subs.HUGE_OUTPUT_CELL)])
    result = _grade(tmp_path, text)
    assert result.score == result.max_score
    spam = [c for c in result.cells if c.output.startswith("spam")]
    assert spam and spam[0].status == "ok" and spam[0].output_bytes > 2_000_000, result.cells
    assert len(spam[0].output) <= 4000 and "printed 2,0" in spam[0].message
    assert any("printed" in n for n in result.notes)
    assert len(json.dumps(result.to_dict())) < 100_000


def test_patched_checker_does_not_help(tmp_path):
    bug = subs.BUGS["log_prob"][0]
    text = subs.build(subs.with_bugs({"log_prob": bug}), [("start", subs.PATCH_CHECKER_CELL),
                                                          ("end", subs.PATCH_CHECKER_CELL)])
    result = _grade(tmp_path, text)
    q = _by_id(result)
    assert {k for k, v in q.items() if not v.passed} == {"q4_log_prob"}
    assert "log(2π)" in q["q4_log_prob"].message


def test_reading_the_master_from_disk_is_refused(tmp_path):
    cell = subs.READ_MASTER_CELL.format(master=str(subs.MASTER), root=str(ROOT))
    ns = {}
    exec(cell, ns)  # outside the grader the cheat works: it defines every answer from the master
    assert callable(ns.get("log_prob")) and ns["secret"]
    text = subs.build(extra_cells=[("end", cell)], solved=False)  # after the stubs: it would replace them
    result = _grade(tmp_path, text)
    assert result.score == 0, [(q.id, q.message) for q in result.questions]
    assert all(q.status == "not implemented" for q in result.questions)


def test_editing_results_and_submission_is_refused(tmp_path):
    out = tmp_path / "grades"
    out.mkdir()
    sub = tmp_path / "submissions" / "student.ipynb"
    targets = [str(out / "student.json"), str(out / "student.csv"), str(tmp_path / "elsewhere" / "x.json")]
    cell = subs.EDIT_RESULT_CELL.format(targets=targets, submission=str(sub))
    bug = subs.BUGS["score"][0]
    text = subs.build(subs.with_bugs({"score": bug}), [("start", cell)])
    result = _grade(tmp_path, text, name="student.ipynb", protect=[out, sub.parent])
    assert sub.exists()
    write_result(result, out)
    data = json.loads((out / "student.json").read_text())
    assert data["score"] == 8 and data["max_score"] == 10
    assert not (tmp_path / "elsewhere").exists()
    assert sorted(p.name for p in out.iterdir()) == ["student.csv", "student.json"]
    assert (out / "student.csv").read_text().splitlines()[-1].startswith("student.ipynb,a0_sampling,total,8,10")


def test_blocked_references(tmp_path):
    text = subs.build({"log_prob": subs.BLOCKED_FUNCTIONS, "score": "pass"})
    result = _grade(tmp_path, text)
    q = _by_id(result)
    assert {k for k, v in q.items() if not v.passed} == {"q4_log_prob", "q5_score"}
    for k in ("q4_log_prob", "q5_score"):
        assert q[k].status == "blocked", q[k].message
        assert "not allowed while grading" in q[k].message and "GaussianMixture" in q[k].message


def test_forged_replies_are_refused(tmp_path):
    result = _grade(tmp_path, subs.build({"sample_components": subs.FORGED_REPLY_FUNCTION}))
    q = _by_id(result)
    assert {k for k, v in q.items() if not v.passed} == {"q1_components", "q3_mixture"}
    assert "could not read what your code sent back" in q["q1_components"].message
    assert result.score == 6


def test_workers_without_a_zygote(tmp_path):
    """macOS and other non-Linux systems start each worker as a fresh interpreter; the same guarantees hold."""
    from dlcourse.grading.grader import _Spawner

    spawner = _Spawner()
    spawner.use_zygote = False
    try:
        text = subs.build(subs.with_bugs({"score": subs.BUGS["score"][0]}), [("start", subs.OS_EXIT_CELL)])
        result = _grade(tmp_path, text, spawner=spawner, cell_time_limit=30)
    finally:
        spawner.close()
    assert result.score == 8 and [c.status for c in result.cells] == ["crashed"]


def test_unrelated_failing_cells_and_missing_imports_are_reported(tmp_path):
    result = _grade(tmp_path, subs.build(extra_cells=subs.UNRELATED_FAILURES))
    assert result.score == result.max_score
    messages = " | ".join(c.message for c in result.cells)
    assert "ModuleNotFoundError" in messages and "ZeroDivisionError" in messages and "RuntimeError" in messages


def test_missing_function_is_named(tmp_path):
    text = subs.build({"score": "# deleted"})
    q = _by_id(_grade(tmp_path, text))
    assert "does not define 'score'" in q["q5_score"].message


def test_not_a_notebook(tmp_path):
    bad = tmp_path / "broken.ipynb"
    bad.write_text("{ not json")
    with pytest.raises(DlcourseError):
        Grader().grade(bad)
    result = Grader(master=subs.MASTER, **FAST).grade(bad)
    assert result.score == 0 and result.notes and "not a readable notebook" in result.notes[0]


# --------------------------------------------------------------------------------------------------------------
# the command line


def test_cli_grade_folder_writes_csv_and_json(tmp_path, capsys):
    folder = tmp_path / "hand-in"
    folder.mkdir()
    (folder / "alice.ipynb").write_text(subs.build())
    (folder / "bob.ipynb").write_text(subs.build(subs.with_bugs({"score": subs.BUGS["score"][0]})))
    before = {p.name: _sha(p) for p in folder.iterdir()}
    out = tmp_path / "grades"
    assert main(["grade", str(folder), "--hidden", "--out", str(out), "--timeout", "5"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["alice.csv", "alice.json", "bob.csv", "bob.json"]
    assert {p.name: _sha(p) for p in folder.iterdir()} == before
    assert json.loads((out / "bob.json").read_text())["score"] == 8
    text = capsys.readouterr().out
    assert "alice.ipynb" in text and "10/10" in text and "8/10" in text


def test_cli_grade_one_file_table_and_json(tmp_path, capsys):
    sub = tmp_path / "mine.ipynb"
    sub.write_text(subs.build(subs.with_bugs({"log_prob": subs.BUGS["log_prob"][0]})))
    assert main(["grade", str(sub), "--timeout", "5"]) == 0
    table = capsys.readouterr().out
    assert "q4_log_prob" in table and "0/2" in table and "total" in table and "8/10" in table
    assert main(["grade", str(sub), "--json", "--timeout", "5"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["score"] == 8 and data["hidden"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.ipynb"]  # nothing written next to it


def test_release_has_no_solutions_or_hidden_tests(tmp_path, capsys):
    dest = tmp_path / "bundle"
    assert main(["release", str(dest)]) == 0
    for item in ("README.md", "course/README.md", "course/grading.md", "assignments/a0_sampling.ipynb",
                 "dlcourse/grading/grader.py", "lectures/00_welcome.ipynb"):
        assert (dest / item).exists(), item
    assert not (dest / "solutions").exists() and not (dest / "tests").exists()
    leaks = hidden_texts()
    assert leaks
    for path in dest.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".ipynb", ".md", ".txt", ".json", ".toml"):
            text = path.read_text(encoding="utf-8", errors="ignore")
            assert not [line for line in leaks if line in text], path
    # a non-empty folder needs --force
    assert main(["release", str(dest)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["release", str(dest), "--force"]) == 0


def test_release_refuses_a_leak(tmp_path):
    root = tmp_path / "course"
    (root / "solutions").mkdir(parents=True)
    (root / "solutions" / "a0_sampling.py").write_text(subs.MASTER.read_text())
    generate_assignments(root / "solutions", root / "assignments")
    (root / "lectures").mkdir()
    leak = hidden_texts(root / "solutions")[0]
    (root / "lectures" / "notes.md").write_text("a note quoting a hidden test:\n" + leak + "\n")
    with pytest.raises(DlcourseError, match="hidden-test text"):
        release(tmp_path / "out", root=root)


def test_assign_check_detects_out_of_date(tmp_path, capsys):
    out = tmp_path / "assignments"
    assert main(["assign", "--out", str(out)]) == 0
    assert main(["assign", "--out", str(out), "--check"]) == 0
    path = out / "a0_sampling.ipynb"
    path.write_text(path.read_text().replace("inverse CDF", "inverse cdf"))
    assert main(["assign", "--out", str(out), "--check"]) == 1
    first = path.read_bytes()
    assert main(["assign", "--out", str(out)]) == 0
    again = path.read_bytes()
    assert main(["assign", "--out", str(out)]) == 0
    assert path.read_bytes() == again != first  # deterministic
