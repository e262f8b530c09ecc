"""Assignment a2 (score SDEs): one deliberate bug per question loses exactly that question's points, with a
message naming the symptom. (Full marks for the master and zero for the student version are checked for every
assignment in tests/test_grading.py.)"""

from pathlib import Path

import pytest

MASTER = Path(__file__).resolve().parents[1] / "solutions" / "a2_score_sdes.py"

# {question: (text in the master's solution, the bug, a phrase the grader's message must contain)}
BUGS = {
    "q1_marginal": ("return alpha * x0, torch.sqrt(-torch.expm1(-integral))",
                    "return alpha * x0, -torch.expm1(-integral)", "variance"),
    "q2_predictor": ("return x - f + beta * score + torch.sqrt(beta) * z",
                     "return x - f - beta * score + torch.sqrt(beta) * z", "subtracted the score"),
    "q3_corrector": ("return x + eps * score + torch.sqrt(2 * eps) * z",
                     "return x + eps * score + torch.sqrt(eps) * z", "sqrt(2 eps)"),
    "q4_flow": ("return -0.5 * beta * x - 0.5 * beta * score", "return -0.5 * beta * x - beta * score",
                "reverse-SDE drift"),
}


@pytest.mark.parametrize("question", BUGS)
def test_one_bug_loses_exactly_its_question(question, one_bug):
    one_bug(MASTER, question, *BUGS[question])
