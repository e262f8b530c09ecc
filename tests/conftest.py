"""Shared test set-up: one torch thread per test, so results and timings do not depend on the machine's cores
(`make test` runs two pytest workers on two cores); and the one-deliberate-bug check of the assignments."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def one_bug(tmp_path):
    """``one_bug(master, question, old, new, symptom)``: grade a copy of ``master`` with ``old`` replaced by
    ``new`` (hidden tests on) and check that exactly ``question`` is lost, with ``symptom`` in its message."""
    from dlcourse.grading.grader import Grader

    def check(master, question, old, new, symptom):
        text = master.read_text()
        assert text.count(old) == 1, f"the master changed: update the bug for {question!r} ({old!r})"
        submission = tmp_path / master.name
        submission.write_text(text.replace(old, new))
        result = Grader(hidden=True, master=master, time_limit=30, cell_time_limit=30).grade(submission)
        lost = {q.id for q in result.questions if not q.passed}
        assert lost == {question}, [(q.id, q.status, q.message) for q in result.questions]
        message = next(q.message for q in result.questions if q.id == question)
        assert symptom in message, message

    return check
