"""Assignment a4 (GAIL): one deliberate bug per question loses exactly that question's points, with a message
naming the symptom. (Full marks for the master and zero for the student version are checked for every
assignment in tests/test_grading.py.)"""

from pathlib import Path

import pytest

MASTER = Path(__file__).resolve().parents[1] / "solutions" / "a4_gail.py"

# {case: (question, text in the master's solution, the bug, a phrase the grader's message must contain)}
BUGS = {
    "q1_swapped_labels": (
        "q1_disc_loss", "return F.softplus(-logits_policy).mean() + F.softplus(logits_expert).mean()",
        "return F.softplus(logits_policy).mean() + F.softplus(-logits_expert).mean()", "swapped the labels"),
    "q1_log_sigmoid": (
        "q1_disc_loss", "return F.softplus(-logits_policy).mean() + F.softplus(logits_expert).mean()",
        "return -torch.log(torch.sigmoid(logits_policy)).mean() - torch.log(1 - torch.sigmoid(logits_expert)).mean()",
        "softplus"),
    "q2_cost_not_reward": ("q2_reward", "return F.softplus(-logits)", "return -F.softplus(-logits)",
                           "cost log D"),
    "q2_log_sigmoid": ("q2_reward", "return F.softplus(-logits)", "return -torch.log(torch.sigmoid(logits))",
                       "softplus(-logits)"),
    "q3_bootstrap_through_termination": (
        "q3_gae", "not_term = (~terminated).to(rewards.dtype)", "not_term = torch.ones_like(rewards)",
        "bootstrapped through a termination"),
    "q3_no_reset": ("q3_gae", "not_done = (~dones).to(rewards.dtype)", "not_done = torch.ones_like(rewards)",
                    "forgot to reset"),
    "q3_done_for_terminated": ("q3_gae", "not_term = (~terminated).to(rewards.dtype)",
                               "not_term = (~dones).to(rewards.dtype)", "instead of terminated"),
    "q4_not_normalised": ("q4_gail_advantages", "return (adv - adv.mean()) / (adv.std() + 1e-8), ret",
                          "return adv, ret", "did not normalise"),
}


@pytest.mark.parametrize("case", BUGS)
def test_one_bug_loses_exactly_its_question(case, one_bug):
    one_bug(MASTER, *BUGS[case])
