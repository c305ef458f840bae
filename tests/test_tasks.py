import pytest

from emoreg.errors import EmoregError, ValidationError
from emoreg.tasks import BUILTIN_TASKS, load_task


def test_builtin_tasks_have_their_labels_in_order():
    assert BUILTIN_TASKS["deep-shame"].labels == (
        "Withdrawal", "Attack Self", "Attack Other", "Avoidance", "Depreciation",
        "Stabilize Self", "Rest")
    assert BUILTIN_TASKS["annomi-client-talk"].labels == ("change", "neutral", "sustain")
    assert BUILTIN_TASKS["annomi-therapist"].labels == (
        "reflection", "question", "therapist_input", "other")
    for task in BUILTIN_TASKS.values():
        for label in task.labels:
            assert task.definitions[label].endswith("."), (task.name, label)


def test_deep_shame_says_which_definitions_are_ours():
    notes = BUILTIN_TASKS["deep-shame"].notes
    assert "Compass of Shame" in notes and "emoreg's reading" in notes


def test_user_task_from_yaml(tmp_path):
    path = tmp_path / "reg.yaml"
    path.write_text("name: reg\nlabels:\n"
                    "  - {name: reappraisal, definition: Reinterprets the situation.}\n"
                    "  - {name: suppression, definition: Hides the emotion.}\n")
    task = load_task(path)
    assert task.name == "reg" and task.labels == ("reappraisal", "suppression")
    assert task.index("suppression") == 1
    with pytest.raises(EmoregError, match="'other' is not part of task 'reg'"):
        task.index("other")


def test_bad_task_yaml_reports_every_problem(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: ''\ncolour: red\nlabels:\n"
                    "  - {name: a, definition: ''}\n"
                    "  - {name: a, definition: Twice.}\n")
    with pytest.raises(ValidationError) as info:
        load_task(path)
    fields = [p.field for p in info.value.problems]
    assert fields == ["colour", "name", "labels[0].definition", "labels[1].name"]
    assert "label 'a' appears twice" in str(info.value)


def test_unknown_task_name_is_a_clear_error():
    with pytest.raises(EmoregError, match="unknown task 'deep-shme'.*deep-shame"):
        load_task("deep-shme")
