"""The docs stay true to the code: every setting documented, the README's commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

from server.settings import ENV_NAMES, Settings

ROOT = Path(__file__).resolve().parent.parent


def settings_table_names() -> set[str]:
    """Every `NAME` in the first column of docs/settings.md's tables."""
    names: set[str] = set()
    for line in (ROOT / "docs" / "settings.md").read_text().splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell))
    return names


def test_every_settings_field_has_an_environment_variable() -> None:
    missing = set(Settings.model_fields) - set(ENV_NAMES)
    assert not missing, f"Settings fields without an ENV_NAMES entry: {sorted(missing)}"


def test_every_setting_has_a_row_in_docs_settings() -> None:
    missing = set(ENV_NAMES.values()) - settings_table_names()
    assert not missing, f"add a row for each of these to docs/settings.md: {sorted(missing)}"


def test_docs_settings_lists_no_delegate_variable_the_code_does_not_read() -> None:
    documented = {name for name in settings_table_names() if name.startswith("DELEGATE_")}
    unknown = documented - set(ENV_NAMES.values())
    assert not unknown, f"docs/settings.md documents settings that server/settings.py does not have: {sorted(unknown)}"


def test_readme_setup_commands_are_the_ones_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci_commands = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.startswith(("python3 ", ".venv/"))
    ]
    assert len(ci_commands) == 2
    for command in ci_commands:
        assert f"```bash\n{command}\n```" in readme, f"README no longer shows the command CI runs: {command}"


def test_every_relative_link_in_readme_and_docs_resolves() -> None:
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, f"broken links: {broken}"
