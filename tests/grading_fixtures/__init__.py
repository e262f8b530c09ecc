"""Submissions the grading tests feed to the grader: `a0_submissions` (right, wrong and broken answers to a0) and
`attacks` (hostile ones). The tests import them as ``from grading_fixtures import ...`` (pytest puts ``tests/`` on
the path)."""
