"""Files by reference, hardened: a bounded walk, more credentials refused, no wide roots, no probing, no races."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from mcp import Client
from mcp_types import ListRootsResult, Root

from server.app import build_server
from server.clock import Deadline
from server.delegation import Delegator
from server.errors import FileRefusedError
from server.files import FileReader, FileRules, WalkLimits, configured_roots, is_secret, root_paths
from server.filesys.opening import Unreadable, read_text
from tests.simulator import ProviderSimulator

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("print('app')\n")
    (root / "README.md").write_text("# Project\n")
    return root


async def call(delegator: Delegator, arguments: dict[str, Any], **client: Any) -> Any:
    async with Client(build_server(delegator), **client) as session:
        return await session.call_tool("ask_coder", {"task": "Review", **arguments})


def reader(project: Path, **rules: Any) -> FileReader:
    return FileReader(FileRules(roots=(project.resolve(),), **rules))


def refusal(project: Path, files: list[str], **rules: Any) -> str:
    with pytest.raises(FileRefusedError) as refused:
        reader(project, **rules).read(files)
    return str(refused.value)


def many(folder: Path, folders: int, files: int) -> None:
    for number in range(folders):
        (folder / f"d{number}").mkdir()
        for index in range(files):
            (folder / f"d{number}" / f"f{index}.txt").write_text("x")


# High: a big glob is refused as soon as it finds one file too many, and reading obeys the call's deadline


def test_a_glob_stops_at_the_first_file_over_the_limit_not_after_the_walk(project: Path) -> None:
    many(project, 5, 3)
    # Walking every folder first would meet the walk's folder limit (2); stopping at the third file does not.
    message = refusal(project, ["d*/*"], max_files=2, walk=WalkLimits(max_folders=2))
    assert "more than 2 files requested (at 'd*/*')" in message and "DELEGATE_MAX_FILES" in message


def test_the_walk_and_the_reading_stop_at_the_calls_deadline(project: Path) -> None:
    expired = Deadline(0)
    with pytest.raises(FileRefusedError, match=r"the call's deadline \(DELEGATE_DEADLINE_S\) came while looking for"):
        reader(project).read(["src/*.py"], 0, expired)
    with pytest.raises(FileRefusedError, match=r"came while reading its files \(0 of 1 read\)"):
        reader(project).read(["README.md"], 0, expired)


async def test_a_call_whose_deadline_passes_while_reading_files_is_refused_before_any_provider(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, project: Path
) -> None:
    delegator = make_delegator({"DELEGATE_FILE_ROOTS": str(project)}, deadline_s=1e-6)
    result = await call(delegator, {"files": ["src/*.py"]})
    assert result.is_error and "came while looking for its files" in result.content[0].text
    assert sim.history == []


# Medium: the walk itself is bounded (folders, depth, time), and symlink loops are not followed


def test_a_walk_opening_too_many_folders_is_refused_naming_the_limit(project: Path) -> None:
    many(project, 6, 1)
    message = refusal(project, ["**/*.rs"], walk=WalkLimits(max_folders=5))
    assert "the walk opened 5 folders, the most one call's globs may open" in message


def test_a_walk_over_its_time_is_refused_naming_the_limit(project: Path) -> None:
    message = refusal(project, ["**/*.py"], walk=WalkLimits(seconds=0))
    assert "took over 0 s, the longest one call's globs may walk" in message


def test_symlinks_that_loop_back_are_not_followed(project: Path) -> None:
    (project / "docs").mkdir()
    (project / "docs" / "README.md").write_text("docs\n")
    for name in ("a", "b", "c"):
        (project / name).symlink_to(".")
    bundle = reader(project).read(["*/README.md"])
    assert [path for path, _ in bundle.contents] == ["docs/README.md"]
    assert bundle.warnings == [
        "files: '*/README.md' did not follow 3 symlinked folder(s) that loop back to a folder above them (a/, b/, c/)"
    ]
    message = refusal(project, ["/".join(["*"] * 14)])
    assert "matches no readable file" in message


async def test_a_folder_tree_deeper_than_the_walk_goes_is_refused_clearly(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, project: Path
) -> None:
    deep = project.joinpath(*["d"] * 70)
    deep.mkdir(parents=True)
    (deep / "end.txt").write_text("bottom\n")
    result = await call(make_delegator({"DELEGATE_FILE_ROOTS": str(project)}), {"files": ["**/*.txt"]})
    assert result.is_error
    assert "it reaches folders more than 64 levels deep, the deepest a glob goes" in result.content[0].text
    assert sim.history == []


def test_double_star_inside_a_part_is_refused_with_an_example(project: Path) -> None:
    assert "'**' must be a whole part of the path, as in 'src/**/*.py'" in refusal(project, ["src/a**/*.py"])


def test_odd_entries_are_refused_plainly(project: Path) -> None:
    assert "cannot contain a NUL character" in refusal(project, ["src/app.py\x00.txt"])
    message = refusal(project, ["x" * 5_000])
    assert "does not exist" in message and len(message) < 600, "a long entry is echoed cut"


# Medium: credential files refused by name, and by content whatever their name

NAMED_CREDENTIALS = [
    "credentials.json",
    "kubeconfig",
    ".config/gh/hosts.yml",
    ".my.cnf",
    "credentials.tfrc.json",
    ".cargo/credentials.toml",
    ".htpasswd",
    ".s3cfg",
    ".vault-token",
    "terraform.tfstate",
    "secrets.json",
]


@pytest.mark.parametrize("path", NAMED_CREDENTIALS)
def test_credential_files_are_recognised_by_name(path: str) -> None:
    assert is_secret(PurePosixPath(path), ())


def test_registry_files_holding_a_login_are_refused_and_a_dot_glob_skips_every_credential(project: Path) -> None:
    (project / ".npmrc").write_text("//registry.example.com/:_password=aHVudGVyMg==\n")
    (project / ".yarnrc.yml").write_text('npmRegistries:\n  "https://r.example.com":\n    npmAuthToken: "abc"\n')
    for name in (".my.cnf", ".htpasswd", ".s3cfg", ".vault-token"):
        (project / name).write_text("user:secret\n")
    (project / ".editorconfig").write_text("root = true\n")
    assert "registry token or password" in refusal(project, [".npmrc"])
    assert "registry token or password" in refusal(project, [".yarnrc.yml"])
    bundle = reader(project).read([".*"])
    assert [path for path, _ in bundle.contents] == [".editorconfig"]
    said = " ".join(bundle.warnings)
    assert "skipped 4 credential-like file(s) (.htpasswd, .my.cnf, .s3cfg, and 1 more)" in said
    assert "skipped 2 file(s) holding what looks like a credential" in said


def key_body() -> str:
    return "\n".join(["MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7" + "A" * 12] * 3)


# Built at run time, so this file holds no token a scanner (ours included) would refuse.
TOKENS = [
    ("a private key", "-----BEGIN RSA PRIVATE KEY-----\n" + key_body() + "\n-----END RSA PRIVATE KEY-----\n"),
    ("a private key", '{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\n' + "Q" * 64 + '"}'),
    ("an AWS access key", "aws_access_key_id = " + "AKIA" + "Q7XZ2L4M8N3P5R6T" + "\n"),
    ("a GitHub token", "token: " + "ghp_" + "aB3" * 12 + "\n"),
    ("a GitHub token", "GH=" + "github_pat_" + "11AB" * 20 + "\n"),
    ("a GitLab token", "glpat-" + "x1Y2z3" * 4),
    ("an npm token", "//registry.npmjs.org/:_authToken=" + "npm_" + "a1B2" * 9),
    ("a PyPI token", "password = " + "pypi-AgEIcHlwaS5vcmc" + "Ab1_" * 20),
    ("a Google API key", "key=" + "AIza" + "Sy" + "b" * 33),
    ("a Slack token", "xoxb-" + "1234567890-" + "abcdefABCDEF"),
    ("a Docker Hub token", "dckr_pat_" + "Zz9-" * 8),
    ("an Anthropic key", "sk-ant-api03-" + "Ab9_" * 22),
]


@pytest.mark.parametrize(("kind", "text"), TOKENS)
def test_a_file_holding_a_key_or_token_is_refused_whatever_its_name(project: Path, kind: str, text: str) -> None:
    (project / "notes.txt").write_text(f"Some notes\n{text}\nmore notes\n")
    message = refusal(project, ["notes.txt"])
    assert f"it holds what looks like {kind}" in message and "DELEGATE_FILE_ALLOW" in message
    assert text.strip()[-8:] not in message
    (project / "todo.txt").write_text("todo\n")
    bundle = reader(project).read(["*.txt"])
    assert [path for path, _ in bundle.contents] == ["todo.txt"]
    assert bundle.warnings == [
        f"files: '*.txt' skipped 1 file(s) holding what looks like a credential (notes.txt: {kind}); "
        "DELEGATE_FILE_ALLOW can allow them"
    ]
    allowed = reader(project, allow=("notes.txt",)).read(["notes.txt"])
    assert allowed.contents[0][0] == "notes.txt"


@pytest.mark.parametrize(
    "text",
    [
        'if line.startswith("-----BEGIN PRIVATE KEY-----"):\n    return parse(line)\n',
        "The AWS example id AKIA is followed by 16 characters.\n",
        "ghp_ prefixes a GitHub token; glpat- a GitLab one.\n",
    ],
)
def test_code_that_only_talks_about_keys_is_read(project: Path, text: str) -> None:
    (project / "keys.py").write_text(text)
    assert reader(project).read(["keys.py"]).contents == [("keys.py", text)]


# Medium: no root is /, the home folder or above it, and /proc, /sys and /dev are never read


def test_client_roots_that_would_open_the_whole_disk_are_dropped(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "work").mkdir(parents=True)
    uris = ["file:///", home.as_uri(), tmp_path.as_uri(), "file:///proc", (home / "work").as_uri()]
    assert root_paths(uris, home=home) == [home / "work"]


async def test_a_client_root_of_slash_reads_nothing_outside_the_configured_roots(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, project: Path, tmp_path: Path
) -> None:
    private = tmp_path / "private.txt"
    private.write_text("not for the model\n")

    async def everything(context: Any) -> ListRootsResult:
        return ListRootsResult(roots=[Root(uri="file:///", name="disk")])

    delegator = make_delegator({"DELEGATE_FILE_ROOTS": str(project)})
    for path, why in ((str(private), "outside the allowed roots"), ("/proc/self/status", "which are never read")):
        result = await call(delegator, {"files": [path]}, mode="legacy", list_roots_callback=everything)
        assert result.is_error and why in result.content[0].text, path
    assert sim.history == []


def test_file_roots_naming_slash_or_home_need_the_explicit_override(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    for wide in ("/", str(home)):
        roots, reason = configured_roots(wide, tmp_path / "project", home)
        assert roots == [] and "DELEGATE_FILE_ROOTS_ALLOW_WIDE=1" in reason, wide
    assert configured_roots("/", tmp_path, home, allow_wide=True) == ([Path("/")], "")
    assert configured_roots(f"/proc{os.pathsep}{tmp_path}", tmp_path, home, allow_wide=True) == ([tmp_path], "")


async def test_the_override_opens_slash_but_never_proc_sys_or_dev(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("readable\n")
    refused = await call(make_delegator({"DELEGATE_FILE_ROOTS": "/"}), {"files": [str(notes)]})
    assert refused.is_error and "DELEGATE_FILE_ROOTS_ALLOW_WIDE" in refused.content[0].text
    wide = make_delegator({"DELEGATE_FILE_ROOTS": "/", "DELEGATE_FILE_ROOTS_ALLOW_WIDE": "1"})
    sim.enqueue("sim-coder", "ok")
    result = await call(wide, {"files": [str(notes)]})
    assert result.structured_content["files"] == [{"path": str(notes), "chars": 9}]
    for path in ("/proc/self/status", "/proc/self/maps", "/sys/kernel/*", "/dev/null"):
        result = await call(wide, {"files": [path]})
        assert result.is_error and "under /proc, /sys or /dev, which are never read" in result.content[0].text, path
    assert sim.count("sim-coder") == 1


# Low: one message for every path outside the roots, so none can be probed


def test_a_path_outside_the_roots_gets_one_message_whether_or_not_it_exists(project: Path, tmp_path: Path) -> None:
    (tmp_path / "there.txt").write_text("x")
    (project / "linked").symlink_to(tmp_path)
    pairs = [
        (str(tmp_path / "there.txt"), str(tmp_path / "missing.txt")),
        ("../there.txt", "../missing.txt"),
        ("linked/there.txt", "linked/missing.txt"),
        (str(tmp_path / "th*.txt"), str(tmp_path / "mi*.txt")),
    ]
    for there, missing in pairs:
        said = [refusal(project, [path]).replace(path, "PATH") for path in (there, missing)]
        assert said[0] == said[1] and "outside the allowed roots" in said[0], there


# Low: a glob skips files too big or binary (a named one is still refused)


def test_a_glob_skips_oversize_and_binary_files_with_a_warning(project: Path) -> None:
    (project / "notes.txt").write_text("fine\n")
    (project / "big.txt").write_text("x" * 2_000)
    (project / "blob.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    bundle = reader(project, max_file_chars=1_000).read(["*.txt"])
    assert bundle.contents == [("notes.txt", "fine\n")]
    assert bundle.warnings == [
        "files: '*.txt' skipped 2 file(s) too big, binary or unreadable (big.txt: too big, blob.txt: binary)"
    ]
    assert "DELEGATE_MAX_FILE_CHARS" in refusal(project, ["big.txt"], max_file_chars=1_000)
    message = refusal(project, ["b*.txt"], max_file_chars=1_000)
    assert "matches no readable file (it skipped big.txt: too big, blob.txt: binary)" in message


# Low: open without following links, then check what was opened


def test_a_file_swapped_for_a_symlink_after_the_check_is_not_followed(project: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the root\n")
    checked = project / "src" / "app.py"
    root, real = str(project.resolve()), str(checked.resolve())
    assert read_text(root, real, 1_000, 1_000) == "print('app')\n"
    checked.unlink()
    checked.symlink_to(secret)  # what an attacker does between the check and the read
    with pytest.raises(Unreadable, match="replaced by a symlink"):
        read_text(root, real, 1_000, 1_000)
    (project / "src").rename(project / "old-src")
    (project / "src").symlink_to(tmp_path)  # a folder on the way swapped too
    with pytest.raises(Unreadable, match="replaced by a symlink"):
        read_text(root, str(project.resolve() / "src" / "secret.txt"), 1_000, 1_000)


def test_a_fifo_swapped_in_is_refused_without_blocking(project: Path) -> None:
    path = project / "src" / "app.py"
    path.unlink()
    os.mkfifo(path)  # opening a FIFO for reading with no writer would block for ever without O_NONBLOCK
    with pytest.raises(Unreadable, match="not a regular file"):
        read_text(str(project.resolve()), str(path.resolve()), 1_000, 1_000)


def test_a_glob_skipping_many_files_keeps_a_count_and_names_a_few(project: Path) -> None:
    for number in range(60):
        (project / f".env.{number:02}").write_text("KEY=value\n")
    bundle = reader(project).read(["*"])
    assert [path for path, _ in bundle.contents] == ["README.md"]
    assert len(bundle.warnings) == 1
    assert re.fullmatch(
        r"files: '\*' skipped 60 credential-like file\(s\) \((\.env\.\d\d, ){3}and 57 more\); "
        r"DELEGATE_FILE_ALLOW can allow them",
        bundle.warnings[0],
    ), bundle.warnings[0]
