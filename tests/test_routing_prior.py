"""The prior learned from public instruction sets: shipped as weights, read once, used only where it applies."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest

from server.catalog import load_catalog
from server.routing.classifier import READ_CHARS, Classifier, SoftmaxRegression
from server.routing.lifecycle import training_examples
from server.routing.prior import Prior, load_prior, save_prior, shipped_prior

BUILTINS = ("coder", "generalist", "writer")
GO_PANIC = "My Go service panics with 'assignment to entry in nil map', how do I fix it?"


@pytest.fixture(scope="module")
def examples() -> dict[str, list[str]]:
    return training_examples(load_catalog({}), None)


@pytest.fixture(scope="module")
def model(examples: dict[str, list[str]]) -> SoftmaxRegression:
    return SoftmaxRegression.train(examples)


def test_the_shipped_prior_was_trained_for_the_builtins_as_the_catalogue_describes_them() -> None:
    prior = load_prior()
    assert prior is not None and prior.labels == BUILTINS
    catalog = load_catalog({})
    # A built-in whose description is edited loses its prior: rebuild it (docs/routing.md says how).
    assert list(prior.descriptions) == [catalog.get(name).description for name in BUILTINS]
    assert shipped_prior() is shipped_prior()  # read once per process


def test_a_prior_comes_back_from_its_file_with_the_same_scores(tmp_path: Path) -> None:
    prior = Prior(("a", "b"), ("A.", "B."), {"w:lease": (2.5, 1.25, -0.5), "b:the lease": (4.0, -0.75, 0.5)}, 0.3)
    path = tmp_path / "prior.json.gz"
    save_prior(prior, path)
    back = load_prior(path)
    assert back is not None and (back.labels, back.descriptions, back.scale) == (("a", "b"), ("A.", "B."), 0.3)
    for feature, row in prior.table.items():
        assert back.table[feature] == pytest.approx(row, abs=1e-3)
    reading = back.read("Summarise this lease")
    assert reading.logits == pytest.approx(prior.read("Summarise this lease").logits, abs=1e-3)
    assert reading.logits["a"] > reading.logits["b"] and reading.known == {"w:lease"}


@pytest.mark.parametrize(
    "content",
    # mtime=0: the same bytes in every process, so parallel test workers collect the same test ids
    [b"not gzip", *(gzip.compress(text, mtime=0) for text in (b"{not json", b'{"format": 1}', b"[]"))],
)
def test_a_broken_prior_file_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    path = tmp_path / "prior.json.gz"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="server.routing.prior"):
        assert load_prior(path) is None
    assert "ignoring the classifier's prior" in caplog.text


def test_a_prior_whose_sizes_disagree_is_refused(tmp_path: Path) -> None:
    data = Prior(("a", "b"), ("A.", "B."), {"w:x": (1.0, 0.5, -0.5)}, 0.3).to_json()
    data["features"] = "w:x\nw:y"
    path = tmp_path / "prior.json.gz"
    path.write_bytes(gzip.compress(json.dumps(data).encode()))
    assert load_prior(path) is None
    assert load_prior(tmp_path / "missing.json.gz") is None


def test_a_builtin_whose_description_changed_gets_no_prior(
    examples: dict[str, list[str]], model: SoftmaxRegression
) -> None:
    changed = {**examples, "coder": ["Writes Fortran, and nothing else.", *examples["coder"][1:]]}
    classifier = Classifier(changed, 0.75, model)
    assert classifier.prior is not None and classifier.prior.scored_labels == ["generalist", "writer"]
    assert set(classifier.prior.read(GO_PANIC).logits) == {"generalist", "writer"}


def test_a_user_specialist_gets_no_score_from_the_prior(
    examples: dict[str, list[str]], model: SoftmaxRegression
) -> None:
    mine = {**examples, "sql": ["Writes SQL.", "Write a query that returns each customer's latest order"]}
    classifier = Classifier(mine, 0.75, model)
    assert classifier.prior is not None and set(classifier.prior.read(GO_PANIC).logits) == set(BUILTINS)


def test_when_the_examples_and_the_public_sets_disagree_the_router_decides(
    examples: dict[str, list[str]], model: SoftmaxRegression
) -> None:
    descriptions = tuple(examples[name][0] for name in BUILTINS)
    # A prior that reads "service" as writing, against the catalogue's examples, which read the task as code.
    contrary = Prior(BUILTINS, descriptions, {"w:service": (1.0, -3.0, 0.0, 3.0)}, 0.3)
    classifier = Classifier(examples, 0.5, model, contrary)
    assessment = classifier.assess(GO_PANIC)
    assert assessment.prediction is not None and assessment.prediction.label == "coder"
    assert assessment.prediction.confidence >= 0.5
    assert assessment.decision is None
    assert assessment.abstained == "the examples point to coder but the public sets to writer"
    assert Classifier(examples, 0.5, model, None).decide(GO_PANIC) is not None


def test_what_is_pasted_after_the_first_characters_does_not_move_the_decision(
    examples: dict[str, list[str]], model: SoftmaxRegression
) -> None:
    classifier = Classifier(examples, 0.75, model)
    request = "Write a limerick about my cat. " + "She sleeps on the warm keyboard all day long. " * 14
    pasted = request + "What she typed:\n" + "def f(x):\n    return x + 1  # a function\n" * 2000
    assert len(request) >= READ_CHARS
    whole, head = classifier.assess(pasted), classifier.assess(pasted[:READ_CHARS])
    assert whole == head and whole.decision is not None and whole.decision.label == "writer"
