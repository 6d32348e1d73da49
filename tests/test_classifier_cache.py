"""The trained classifier is cached as JSON in the data directory, keyed by its examples."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from server.catalog import load_catalog
from server.routing.classifier_cache import cache_path, load_or_train
from server.routing.lifecycle import training_examples

GO_PANIC = "My Go service panics with 'assignment to entry in nil map', how do I fix it?"


@pytest.fixture(scope="module")
def examples() -> dict[str, list[str]]:
    return training_examples(load_catalog({}), None)


def test_a_start_with_unchanged_specialists_loads_the_cache_instead_of_training(
    tmp_path: Path, examples: dict[str, list[str]]
) -> None:
    first = load_or_train(examples, 0.75, tmp_path)
    assert first.decide(GO_PANIC).label == "coder"
    path = cache_path(tmp_path, examples)
    state = json.loads(path.read_text(encoding="utf-8"))  # plain JSON, never a pickle
    state["weights"]["writer"]["w:go"] = 500.0  # only a loaded (not retrained) model can know this
    path.write_text(json.dumps(state), encoding="utf-8")
    second = load_or_train(examples, 0.75, tmp_path)
    assert second.predict(GO_PANIC).label == "writer"  # a guess: the shipped prior disagrees, so not decided


def test_changed_examples_train_a_new_classifier_and_replace_the_old_cache(
    tmp_path: Path, examples: dict[str, list[str]]
) -> None:
    load_or_train(examples, 0.75, tmp_path)
    changed = {label: [*texts] for label, texts in examples.items()}
    changed["coder"].append("Port this Fortran routine to Julia")
    load_or_train(changed, 0.75, tmp_path)
    assert [p.name for p in tmp_path.glob("classifier-*.json")] == [cache_path(tmp_path, changed).name]
    assert cache_path(tmp_path, changed) != cache_path(tmp_path, examples)


@pytest.mark.parametrize("content", [b"{not json", b'{"format": 2, "labels": 7}', b"\xff\xfe", b"[]"])
def test_a_corrupt_cache_is_ignored_and_retrained_with_a_debug_log(
    tmp_path: Path, examples: dict[str, list[str]], caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    path = cache_path(tmp_path, examples)
    path.write_bytes(content)
    with caplog.at_level(logging.DEBUG, logger="server.routing.classifier_cache"):
        classifier = load_or_train(examples, 0.75, tmp_path)
    assert classifier.decide(GO_PANIC).label == "coder"
    assert "ignoring the classifier cache" in caplog.text
    assert json.loads(path.read_text(encoding="utf-8"))["labels"] == sorted(examples)


def test_an_unwritable_data_directory_still_gives_a_classifier(tmp_path: Path, examples: dict[str, list[str]]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert load_or_train(examples, 0.75, blocker / "data").decide(GO_PANIC).label == "coder"
