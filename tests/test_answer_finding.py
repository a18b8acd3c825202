"""Where the answer is (no kernel): an element of a returned tuple or dict, optional arguments
fitted to a signature, class-check fields in specs, and explanations in the assignment's names."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from grader.assignment.load import find_assignment
from grader.authoring.validate import validate
from grader.errors import SpecError
from grader.judging.answer import describe_elements, pick
from grader.judging.compare import compare
from grader.judging.diagnose import Failure, diagnose
from grader.run.probe import Value
from grader.run.runner import fit
from grader.run.runner_values import Misfit
from tests.course_notebooks import BIKES, LAB, PLANAR, TWO_LAYER

RTOL, ATOL = 1e-5, 1e-8
Y_HAT = np.array([0.25])


def arr(*values: float) -> Value:
    return Value("array", array=np.array(values, dtype=float))


def tup(*items: Value) -> Value:
    return Value("seq", items=list(items), is_tuple=True, length=len(items))


def choose(value: Value, expected: np.ndarray = Y_HAT, take=None, hidden: bool = False):
    return pick([value], [expected], take, False, hidden)


def test_the_answer_is_taken_first_or_last_whatever_its_values():
    z1 = arr(1, 2, 3, 4, 5)
    assert choose(tup(arr(0.25), arr(-1.1), z1)).position == 0  # output first: the only end of its shape
    assert choose(tup(z1, z1, arr(-1.1), arr(0.25))).position == 3  # output last
    assert "item 3 of the returned tuple" in choose(tup(z1, z1, arr(-1.1), arr(0.25))).note
    # the same positions when the output is the wrong one: the choice never looks at the values
    assert choose(tup(arr(-1.1), arr(0.25), z1)).position == 0
    assert choose(tup(z1, z1, arr(0.25), arr(-1.1))).position == 3


def test_an_element_of_another_shape_is_never_taken_even_if_its_values_would_fit():
    # the right number inside a longer array is not the answer
    chosen = choose(tup(arr(0.25, 0.25), arr(0.9)))
    assert chosen.position == 1 and "the only one of the expected shape" in chosen.note
    assert not compare(chosen.apply(tup(arr(0.25, 0.25), arr(0.9))), Y_HAT).ok


def test_of_several_elements_of_the_expected_shape_the_choice_never_looks_at_their_values():
    """A tuple of candidate answers does not pass by whichever matches (docs/security.md)."""
    for right_at in range(5):
        candidates = [arr(float(i) + 0.5) for i in range(5)]
        candidates[right_at] = arr(0.25)
        chosen = choose(tup(*candidates))
        assert chosen.position == 4 and "the last of those" in chosen.note
        assert compare(chosen.apply(tup(*candidates)), Y_HAT).ok == (right_at == 4)


def test_one_position_serves_every_trial():
    values = [tup(arr(0.25), arr(1, 2)), tup(arr(0.7), arr(3, 4))]
    chosen = pick(values, [Y_HAT, np.array([0.5])], None, False, False)
    assert chosen.position == 0


def test_declared_candidates_limit_the_search_and_choose_the_judged_one():
    value = Value("dict", keys=["z2", "y_hat", "A2"], items=[arr(0.25), arr(0.9), arr(0.8)], length=3)
    chosen = choose(value, take=["y_hat", "A2"])
    assert chosen.position == 1 and "the first the assignment names" in chosen.note
    assert "'y_hat'" in chosen.note
    assert choose(value, take=["a2"]).position == 2  # keys as students spell them


def test_one_declared_index_is_taken_whatever_its_shape():
    assert choose(tup(arr(1, 2), arr(0.25)), take=0).position == 0


def test_nothing_of_the_expected_shape_says_what_came_back():
    chosen = choose(tup(arr(1, 2, 3, 4, 5), arr(1, 2, 3)))
    assert chosen.position is None
    assert chosen.failure == "returned a tuple of 2 arrays of shapes (5,), (3,); none has the expected shape (1,)"
    hidden = choose(tup(arr(1, 2, 3, 4, 5), arr(1, 2, 3)), hidden=True)
    assert hidden.failure == "returned a tuple; none has the expected shape (1,)"
    mixed = tup(arr(1, 2), Value("none"), Value("dict", keys=["a"], items=[arr(1)], length=1))
    assert describe_elements(mixed, False) == "a tuple of 3 items: an array of shape 2, None, a dict with keys 'a'"


def test_a_list_of_numbers_that_is_the_answer_is_taken_whole():
    whole = Value("seq", items=[arr(0.1), arr(0.2)], length=2, array=np.array([0.1, 0.2]))
    assert choose(whole, np.array([0.1, 0.2])).position is None


def test_a_list_of_numbers_of_another_size_is_one_wrong_array_not_several_answers():
    seven = Value("seq", items=[Value("array", array=np.array(0.0))] * 7, length=7, array=np.zeros(7))
    assert choose(seven).position is None
    numbers = tup(Value("array", array=np.array(0.25)), Value("array", array=np.array(3.0)))
    assert choose(numbers).position == 1  # a tuple is several values, of numbers too: the last is judged


def test_hidden_checks_do_not_say_which_element_or_its_key():
    value = Value("dict", keys=["secret_3"], items=[arr(0.25)], length=1)
    assert "secret" not in choose(value, hidden=True).note


def f2(A2, Y):  # noqa: N803 (as the course writes it)
    return (A2, Y)


def f3(A2, Y, parameters):  # noqa: N803
    return (A2, Y, parameters)


def f3_default(AL, Y, verbose=False):  # noqa: N803
    return (AL, Y, verbose)


def f3_named_default(AL, Y, parameters=None):  # noqa: N803
    return (AL, Y, parameters)


def f_named(Y, A2, *, parameters):  # noqa: N803
    return (A2, Y, parameters)


def f4(A2, Y, parameters, lambd):  # noqa: N803
    return 0.0


@pytest.mark.parametrize(
    ("fn", "expected"),
    [(f2, ("a", "y")), (f3, ("a", "y", "p")), (f3_default, ("a", "y", False)),
     (f3_named_default, ("a", "y", "p")), (f_named, ("a", "y", "p"))],
)
def test_optional_arguments_are_passed_when_the_function_takes_them(fn, expected):
    pos, kwargs = fit(fn, ["a", "y"], ["A2", "Y"], ["p"], ["parameters"])
    assert fn(*pos, **kwargs) == expected


def test_a_signature_that_cannot_take_the_arguments_is_a_misfit():
    with pytest.raises(Misfit) as e:
        fit(f4, ["a", "y"], ["A2", "Y"], ["p"], ["parameters"])
    assert e.value.takes == 4
    with pytest.raises(Misfit):
        fit(f3, ["a", "y"], ["A2", "Y"])  # no optional arguments declared
    assert fit(max, [1, 2], ["a", "b"]) == ([1, 2], {})  # no signature: called as is


def test_the_sign_hint_uses_the_assignments_names():
    expected = np.array([0.5, -1.0])
    c = compare(Value("array", array=-expected), expected, RTOL, ATOL)
    d = diagnose("dw", [Failure(c, 0)], RTOL, ATOL, names=("y_hat", "y"))
    assert "(y_hat - y, not y - y_hat)" in d[0].message
    d = diagnose("dw", [Failure(c, 0)], RTOL, ATOL)
    assert "(y - t, not t - y)" in d[0].message


@pytest.mark.parametrize("folder", [LAB, PLANAR, TWO_LAYER, BIKES])
def test_course_fixtures_validate_without_notebooks(folder):
    result = validate(str(folder), notebooks=False)
    assert result.ok, [f.message for f in result.findings if not f.ok]


def _spec_error(tmp_path: Path, source: Path, old: str, new: str) -> str:
    folder = tmp_path / "asg"
    shutil.copytree(source, folder)
    toml = folder / "assignment.toml"
    text = toml.read_text()
    assert old in text
    toml.write_text(text.replace(old, new, 1))
    with pytest.raises(SpecError) as e:
        find_assignment(str(folder))
    return str(e.value)


@pytest.mark.parametrize(
    ("source", "old", "new", "says"),
    [
        (TWO_LAYER, 'method = "loss"\n', "", "checks.0: Value error, a class check needs `method`"),
        (TWO_LAYER, 'state = "params"\n', "", "needs `state`"),
        (TWO_LAYER, 'state_attribute = "params"\n', 'state_attribute = "params"\nstate_attributes = { W1 = "W1" }\n',
         "either `state_attribute` or `state_attributes`"),
        (BIKES, 'read = "state"\n', 'read = "state"\nstate_attribute = "w"\n', "either `state_attribute`"),
        (PLANAR, 'optional_args = ["parameters"]', 'optional_args = ["parameters"]\nmethod = "loss"',
         "`method` belongs to class checks"),
        (LAB, 'target = "y"', 'target = "y"\ntruth = "t"', "names.truth: unknown field"),
        (TWO_LAYER, 'method = "loss"\n', 'method = "loss"\ngiven = "net"\n', "`given` is not supported in class checks"),
        (PLANAR, 'optional_args = ["parameters"]', 'optional_args = "parameters"', "checks[1].optional_args"),
    ],
)
def test_class_and_optional_argument_mistakes_are_one_line_errors(tmp_path, source, old, new, says):
    message = _spec_error(tmp_path, source, old, new)
    assert "assignment.toml" in message and "\n" not in message
    assert says.removeprefix("checks.0: Value error, ") in message, message


def _lab_plan(check_id: str):
    from grader.assignment.reference import Reference
    from grader.plan.checks import plan_check

    asg = find_assignment(str(LAB))
    check = next(c for c in asg.spec.checks if c.id == check_id)
    return plan_check(asg, Reference(asg), check, 7)


def _answers(plan, values: list[Value]):
    from grader.run.probe import Answer

    return {f"{plan.check.id}#{t.index}": Answer(f"{plan.check.id}#{t.index}", plan.check.target, v)
            for t, v in zip(plan.trials, values)}


def test_a_shape_mismatch_reports_no_error_figures():
    from grader.judging.judge import judge

    plan = _lab_plan("simple_feed_forward")
    result = judge(plan, _answers(plan, [arr(1, 2, 3)] * len(plan.trials)), "ok")[0]
    assert result.status == "fail" and result.codes == ["shape_mismatch"]
    assert result.detail["got_shape"] == [3] and result.detail["expected_shape"] == [1]
    assert not {"max_abs_error", "max_rel_error", "worst_index"} & set(result.detail)
    wrong = judge(plan, _answers(plan, [arr(2.0)] * len(plan.trials)), "ok")[0]
    assert wrong.status == "fail" and wrong.detail["max_abs_error"] > 0  # compared values do have them


def test_the_same_element_is_taken_on_every_trial_and_a_wrong_one_never_passes():
    from grader.judging.judge import judge

    plan = _lab_plan("simple_feed_forward")
    right = [t.expected["simple_feed_forward"] for t in plan.trials]
    z1 = arr(1, 2, 3, 4, 5)
    ok = judge(plan, _answers(plan, [tup(z1, Value("array", array=r)) for r in right]), "ok")[0]
    assert ok.status == "pass" and "item 1 of the returned tuple" in ok.message
    # the right value sits in a different place on one trial: no single element is right
    mixed = [tup(Value("array", array=r), Value("array", array=r + 1)) for r in right]
    mixed[0] = tup(Value("array", array=right[0] + 1), Value("array", array=right[0]))
    assert judge(plan, _answers(plan, mixed), "ok")[0].status == "fail"
