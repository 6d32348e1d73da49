"""A user's own specialists win their own tasks, even with five examples against the built-ins' hundred."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from server.catalog import load_catalog
from server.routing.classifier import MIN_EXAMPLES, Classifier
from server.routing.lifecycle import training_examples
from server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


def user_catalogue_classifier(folder: Path, *names: str) -> Classifier:
    """The built-ins copied into a folder with the named user specialists added, as a new user would."""
    for source in (ROOT / "specialists").glob("*.md"):
        shutil.copy(source, folder)
    for name in names:
        shutil.copy(DATA / "user_specialists" / f"{name}.md", folder)
    return Classifier(training_examples(load_catalog({}, folder), None), Settings().classifier_threshold)


def tasks_of(name: str) -> list[str]:
    lines = (DATA / "user_specialist_tasks.jsonl").read_text(encoding="utf-8").splitlines()
    return [item["task"] for item in map(json.loads, lines) if item["expected"] == name]


@pytest.mark.parametrize("name", ["translator", "legal", "sql", "devops", "chef", "marketing"])
def test_a_five_example_specialist_loses_none_of_its_tasks_to_another(tmp_path: Path, name: str) -> None:
    classifier = user_catalogue_classifier(tmp_path, name)
    tasks = tasks_of(name)
    assert len(tasks) == 20
    examples = set(load_catalog({}, tmp_path).get(name).examples)
    assert not examples & set(tasks)  # the tasks are not its examples
    claimed = {task: d.label for task in tasks if (d := classifier.decide(task)) is not None and d.label != name}
    assert claimed == {}


def test_the_issue_case_is_left_to_the_router_not_given_to_the_generalist(tmp_path: Path) -> None:
    classifier = user_catalogue_classifier(tmp_path, "translator")
    assessment = classifier.assess("How do you say 'thank you very much' in Japanese?")
    assert assessment.decision is None and assessment.abstained


def test_an_under_trained_specialist_is_never_decided_by_the_classifier_alone(tmp_path: Path) -> None:
    names = ("translator", "legal", "sql", "devops", "chef", "marketing")
    classifier = user_catalogue_classifier(tmp_path, *names)
    assert classifier.under_trained == sorted(names)
    for name in names:
        for task in tasks_of(name):
            decision = classifier.decide(task)
            assert decision is None or decision.label not in classifier.under_trained


def test_a_specialist_with_enough_examples_is_decided_again(tmp_path: Path) -> None:
    classifier = user_catalogue_classifier(tmp_path, "translator")
    examples = training_examples(load_catalog({}, tmp_path), None)
    examples["translator"] += tasks_of("translator")[: MIN_EXAMPLES - len(examples["translator"])]
    trained = Classifier(examples, classifier.threshold)
    assert trained.under_trained == []
    assert trained.decide("Translate 'see you tomorrow' into German, French and Italian please") is not None


def test_built_in_work_is_still_decided_beside_a_user_specialist(tmp_path: Path) -> None:
    classifier = user_catalogue_classifier(tmp_path, "translator")
    lines = (ROOT / "specialists" / "routing-eval.jsonl").read_text(encoding="utf-8").splitlines()
    cases = [item for item in map(json.loads, lines) if "translat" not in item["task"].lower()]
    decided = [(d.label, case["expected"]) for case in cases if (d := classifier.decide(case["task"])) is not None]
    assert len(decided) >= 0.3 * len(cases)
    assert sum(label == expected for label, expected in decided) >= 0.95 * len(decided)


def test_a_task_near_a_builtin_example_that_resembles_a_user_specialist_is_left_to_the_router(tmp_path: Path) -> None:
    # "Draft a press-style announcement..." shares no word of marketing's description and is nearest to writer's
    # examples; one of those is the nearest to a marketing example, so it is contested and the router decides.
    classifier = user_catalogue_classifier(tmp_path, "marketing")
    assessment = classifier.assess("Draft a press-style announcement of our summer sale for the blog")
    assert assessment.decision is None and assessment.abstained and "marketing" in assessment.abstained
