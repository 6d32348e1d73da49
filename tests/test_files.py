"""Files by reference: the server reads files under the allowed roots and refuses what it must not send."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp_types import ErrorData, ListRootsResult, Root

from server.app import build_server
from server.delegation import Delegator
from server.files import FileReader, FileRules, configured_roots, is_secret, render, root_paths
from tests.conftest import route_to
from tests.simulator import ProviderSimulator

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A small project: two Python files, a README, and the kind of secrets real projects hold."""
    root = tmp_path / "project"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "app.py").write_text("def main():\n    return 'hello from app'\n")
    (root / "src" / "pkg" / "util.py").write_text("def helper():\n    return 42\n")
    (root / "README.md").write_text("# Project\n")
    (root / ".env").write_text("OPENAI_API_KEY=sk-real-secret\n")
    (root / "src" / "server.key").write_text("-----BEGIN PRIVATE KEY-----\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[remote]\n  url = https://token@example.com\n")
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file next to the project, outside every root."""
    path = tmp_path / "elsewhere.txt"
    path.write_text("private notes outside the project\n")
    return path


def sent_to(sim: ProviderSimulator, model: str) -> str:
    """Everything the specialist model received in its last request."""
    return "\n".join(str(m["content"]) for m in sim.calls(model)[-1]["messages"])


async def call(delegator: Delegator, tool: str, arguments: dict[str, Any], **client: Any) -> Any:
    async with Client(build_server(delegator), **client) as session:
        return await session.call_tool(tool, arguments)


def within_project(make_delegator: Callable[..., Delegator], project: Path, **overrides: Any) -> Delegator:
    return make_delegator({"DELEGATE_FILE_ROOTS": str(project)}, **overrides)


# What the specialist receives, and what the result says


async def test_named_files_reach_the_specialist_marked_with_their_paths(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, project: Path
) -> None:
    sim.enqueue("sim-coder", "It returns a greeting.")
    result = await call(
        within_project(make_delegator, project),
        "ask_coder",
        {"task": "What does main return?", "files": ["src/app.py", "README.md"]},
    )
    assert not result.is_error, result.content[0].text
    data = result.structured_content
    assert data["files"] == [{"path": "src/app.py", "chars": 40}, {"path": "README.md", "chars": 10}]
    received = sent_to(sim, "sim-coder")
    assert "File: \"src/app.py\" (40 characters)\n```\ndef main():\n    return 'hello from app'\n```" in received
    assert 'File: "README.md"' in received and "What does main return?" in received


async def test_a_glob_reads_every_match_and_skips_secrets_with_a_warning(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, project: Path
) -> None:
    sim.enqueue("sim-coder", "ok")
    result = await call(within_project(make_delegator, project), "ask_coder", {"task": "Review", "files": ["src/**/*"]})
    data = result.structured_content
    assert [f["path"] for f in data["files"]] == ["src/app.py", "src/pkg/util.py"]
    assert data["warnings"] == [
        "files: 'src/**/*' skipped 1 credential-like file(s) (src/server.key); DELEGATE_FILE_ALLOW can allow them"
    ]
    assert "BEGIN PRIVATE KEY" not in sent_to(sim, "sim-coder")


async def test_a_file_named_twice_is_read_once(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, project: Path
) -> None:
    sim.enqueue("sim-coder", "ok")
    result = await call(
        within_project(make_delegator, project),
        "ask_coder",
        {"task": "Review", "files": ["src/app.py", "src/*.py", "./src/app.py"]},
    )
    assert [f["path"] for f in result.structured_content["files"]] == ["src/app.py"]


async def test_file_contents_count_toward_the_routers_size_information(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, project: Path
) -> None:
    (project / "big.txt").write_text("x" * 30_000)
    sim.enqueue("sim-router", route_to("writer"))
    sim.enqueue("sim-writer", "summary")
    result = await call(
        within_project(make_delegator, project),
        "delegate",
        {"task": "Summarise the log", "context": "c" * 100, "files": ["big.txt"]},
    )
    assert result.structured_content["specialist"] == "writer"
    router_prompt = sent_to(sim, "sim-router")
    total = int(router_prompt.split("total_chars=")[1].split(">")[0])
    assert total > 30_100, "the router must see the files' size as part of the material"
    assert "x" * 30_000 in sent_to(sim, "sim-writer")


async def test_a_file_that_fits_no_model_window_is_refused_before_any_call(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, project: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "small-window"
    folder.mkdir()
    # gpt-3.5-turbo has a 16k-token window in litellm's price map: a 100k-character file cannot fit it.
    (folder / "general.md").write_text(
        f"---\nname: general\ndescription: d\nmodel: openai/gpt-3.5-turbo\napi_base: '{sim.base_url}'\n"
        "default: true\n---\nYou answer.\n"
    )
    (project / "huge.txt").write_text("word " * 20_000)
    delegator = within_project(make_delegator, project, specialists_dir=folder)
    result = await call(delegator, "delegate", {"task": "Summarise", "files": ["huge.txt"]})
    assert result.is_error and "more than any usable model takes" in result.content[0].text
    assert sim.history == []


def test_render_uses_a_fence_no_file_content_can_close() -> None:
    text = render([("notes.md", "Example:\n````\ncode\n````\n")])
    assert "\n`````\nExample:\n````\ncode\n````\n`````" in text
    assert render([("a.txt", "no newline at end")]).endswith("```\nno newline at end\n```")


# Refusals: each names the path and why, and costs zero provider calls


@pytest.mark.parametrize(
    ("files", "why"),
    [
        (["src/missing.py"], "does not exist"),
        (["src/*.rs"], "matches no readable file"),
        (["src"], "is a folder"),
        (["../elsewhere.txt"], "outside the allowed roots"),
        (["src/../../elsewhere.txt"], "outside the allowed roots"),
        (["../*.txt"], "may not climb out"),
        ([".env"], "holds credentials"),
        (["src/server.key"], "holds credentials"),
        ([".git/config"], "holds credentials"),
        ([""], "an entry is empty"),
    ],
)
async def test_refused_files_name_the_path_and_why_and_call_no_provider(
    make_delegator: Callable[..., Delegator],
    sim: ProviderSimulator,
    project: Path,
    outside: Path,
    files: list[str],
    why: str,
) -> None:
    result = await call(within_project(make_delegator, project), "delegate", {"task": "Review", "files": files})
    assert result.is_error
    message = result.content[0].text
    assert why in message and (files[0] in message or not files[0])
    assert "elsewhere" not in message or "private notes" not in message
    assert sim.history == []


async def test_an_absolute_path_outside_every_root_is_refused(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, project: Path, outside: Path
) -> None:
    result = await call(within_project(make_delegator, project), "ask_coder", {"task": "x", "files": [str(outside)]})
    assert (
        result.is_error
        and str(outside) in result.content[0].text
        and "outside the allowed roots" in (result.content[0].text)
    )
    assert sim.history == []


async def test_a_symlink_inside_a_root_pointing_outside_is_refused(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, project: Path, outside: Path
) -> None:
    (project / "notes.txt").symlink_to(outside)
    (project / "linked").symlink_to(outside.parent)
    delegator = within_project(make_delegator, project)
    for files in (["notes.txt"], ["linked/elsewhere.txt"]):
        result = await call(delegator, "ask_coder", {"task": "x", "files": files})
        assert result.is_error and "outside the allowed roots" in result.content[0].text, files
    (project / "todo.txt").write_text("todo")
    sim.enqueue("sim-coder", "ok")
    result = await call(delegator, "ask_coder", {"task": "x", "files": ["*.txt"]})
    assert [f["path"] for f in result.structured_content["files"]] == ["todo.txt"]
    assert "resolve outside the allowed roots (notes.txt)" in result.structured_content["warnings"][0]
    assert len(sim.history) == 1 and "private notes" not in sent_to(sim, "sim-coder")


async def test_a_symlink_cannot_launder_a_secret(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, project: Path
) -> None:
    (project / "harmless.txt").symlink_to(project / ".env")
    result = await call(within_project(make_delegator, project), "ask_coder", {"task": "x", "files": ["harmless.txt"]})
    assert result.is_error and "holds credentials" in result.content[0].text
    assert sim.history == []


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8 text"),
        (b"text\x00with a NUL", "contains NUL bytes"),
    ],
)
async def test_binary_files_are_refused(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, project: Path, content: bytes, why: str
) -> None:
    (project / "blob.bin").write_bytes(content)
    result = await call(within_project(make_delegator, project), "delegate", {"task": "x", "files": ["blob.bin"]})
    assert result.is_error and "'blob.bin'" in result.content[0].text and why in result.content[0].text
    assert sim.history == []


async def test_a_file_over_the_file_limit_is_refused(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, project: Path
) -> None:
    (project / "long.txt").write_text("é" * 1001)  # 1,001 characters in 2,002 bytes
    (project / "ok.txt").write_text("é" * 1000)
    delegator = within_project(make_delegator, project, max_file_chars=1000)
    result = await call(delegator, "delegate", {"task": "x", "files": ["long.txt"]})
    assert result.is_error and "DELEGATE_MAX_FILE_CHARS" in result.content[0].text
    assert "'long.txt'" in result.content[0].text
    assert sim.history == []
    sim.enqueue("sim-coder", "ok")
    result = await call(delegator, "ask_coder", {"task": "x", "files": ["ok.txt"]})
    assert result.structured_content["files"] == [{"path": "ok.txt", "chars": 1000}]


async def test_a_huge_file_is_refused_without_being_read(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, project: Path
) -> None:
    with open(project / "sparse.log", "wb") as handle:  # 10 GB that takes no disk space
        handle.truncate(10 * 1024**3)
    result = await call(within_project(make_delegator, project), "delegate", {"task": "x", "files": ["sparse.log"]})
    assert result.is_error and "10,737,418,240 bytes" in result.content[0].text
    assert sim.history == []


async def test_context_and_files_together_over_the_context_limit_are_refused(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, project: Path
) -> None:
    (project / "a.txt").write_text("a" * 600)
    (project / "b.txt").write_text("b" * 600)
    delegator = within_project(make_delegator, project, max_context_chars=1000)
    result = await call(delegator, "delegate", {"task": "x", "files": ["a.txt", "b.txt"]})
    assert result.is_error and "'b.txt'" in result.content[0].text
    assert "DELEGATE_MAX_CONTEXT_CHARS" in result.content[0].text
    result = await call(delegator, "delegate", {"task": "x", "context": "c" * 500, "files": ["a.txt"]})
    assert result.is_error and "DELEGATE_MAX_CONTEXT_CHARS" in result.content[0].text
    assert sim.history == []


async def test_a_glob_matching_too_many_files_is_refused(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, project: Path
) -> None:
    for number in range(4):
        (project / f"part{number}.txt").write_text(f"part {number}")
    result = await call(
        within_project(make_delegator, project, max_files=3), "delegate", {"task": "x", "files": ["*.txt"]}
    )
    assert result.is_error and "more than 3 files" in result.content[0].text
    assert "DELEGATE_MAX_FILES" in result.content[0].text and "'*.txt'" in result.content[0].text
    assert sim.history == []


async def test_special_files_are_refused(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, project: Path
) -> None:
    os.mkfifo(project / "pipe")  # reading a FIFO would block for ever
    result = await call(within_project(make_delegator, project), "delegate", {"task": "x", "files": ["pipe"]})
    assert result.is_error and "not a regular file" in result.content[0].text
    assert sim.history == []


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        ".env.production",
        "config/.env.local",
        "certs/server.pem",
        "tls.key",
        "home/.ssh/id_rsa",
        "id_ed25519.pub",
        "id_ecdsa",
        ".git/config",
        "sub/.git/objects/ab/cdef",
        ".netrc",
        ".aws/credentials",
        ".config/gcloud/application_default_credentials.json",
        ".azure/msal_token_cache.json",
        ".kube/config",
        "store.p12",
        "cert.pfx",
        ".ENV",
        "Keys/ID_RSA",
        ".GIT/config",
    ],
)
def test_secret_paths_are_recognised(path: str) -> None:
    assert is_secret(PurePosixPath(path), ())


@pytest.mark.parametrize("path", ["src/app.py", ".gitignore", "docs/keys.md", "environment.yml", "git/config"])
def test_ordinary_paths_are_not_secret(path: str) -> None:
    assert not is_secret(PurePosixPath(path), ())


async def test_file_allow_lets_a_listed_secret_looking_file_through(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, project: Path
) -> None:
    (project / ".env.example").write_text("OPENAI_API_KEY=\n")
    delegator = make_delegator({"DELEGATE_FILE_ROOTS": str(project), "DELEGATE_FILE_ALLOW": ".env.example"})
    sim.enqueue("sim-coder", "ok")
    result = await call(delegator, "ask_coder", {"task": "x", "files": [".env.example"]})
    assert result.structured_content["files"] == [{"path": ".env.example", "chars": 16}]
    result = await call(delegator, "ask_coder", {"task": "x", "files": [".env"]})
    assert result.is_error, "allowing one file allows only what the pattern matches"


async def test_a_registry_file_is_refused_only_when_it_holds_a_token(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, project: Path
) -> None:
    (project / ".npmrc").write_text("//registry.npmjs.org/:_authToken=npm_abcdef\n")
    (project / "web").mkdir()
    (project / "web" / ".npmrc").write_text("registry=https://registry.npmjs.org/\n")
    delegator = within_project(make_delegator, project)
    result = await call(delegator, "ask_coder", {"task": "x", "files": [".npmrc"]})
    assert result.is_error and "registry token" in result.content[0].text
    assert sim.history == []
    sim.enqueue("sim-coder", "ok")
    result = await call(delegator, "ask_coder", {"task": "x", "files": ["web/.npmrc"]})
    assert result.structured_content["files"] == [{"path": "web/.npmrc", "chars": 37}]


async def test_files_must_be_a_list_of_strings(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    result = await call(make_delegator(), "delegate", {"task": "x", "files": "src/app.py"})
    assert result.is_error
    assert result.content[0].text == (
        "Invalid arguments for delegate: 'files' must be a list of strings (file paths or glob patterns), not str."
    )
    result = await call(make_delegator(), "delegate", {"task": "x", "files": ["a", 3]})
    assert result.is_error and "'files' must be a list of strings" in result.content[0].text
    assert sim.history == []


# Roots: settings, the working directory, and the client's MCP roots


def test_the_working_directory_is_the_default_root(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    assert configured_roots(None, project, tmp_path / "home") == ([project.resolve()], "")


@pytest.mark.parametrize("where", ["/", "home"])
def test_slash_and_home_are_never_default_roots(tmp_path: Path, where: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    roots, reason = configured_roots(None, Path("/") if where == "/" else home, home)
    assert roots == [] and "DELEGATE_FILE_ROOTS" in reason


def test_file_roots_replace_the_working_directory(tmp_path: Path) -> None:
    roots, _ = configured_roots(f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}", Path("/"), tmp_path)
    assert roots == [tmp_path / "a", tmp_path / "b"]


def test_relative_paths_resolve_against_each_root_in_turn(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (second / "only-here.txt").write_text("second root")
    bundle = FileReader(FileRules(roots=(first, second))).read(["only-here.txt"])
    assert bundle.contents == [("only-here.txt", "second root")]


def test_client_roots_are_file_uris() -> None:
    assert root_paths(["file:///home/me/My%20Project", "https://example.com/x", "file://otherhost/x"]) == [
        Path("/home/me/My Project")
    ]


async def test_started_in_the_home_folder_nothing_is_readable_until_roots_name_a_folder(
    make_delegator: Callable[..., Delegator],
    sim: ProviderSimulator,
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOME", str(project.parent))
    monkeypatch.chdir(project.parent)
    delegator = make_delegator()
    result = await call(delegator, "ask_coder", {"task": "x", "files": ["README.md"]})
    assert (
        result.is_error
        and "home folder" in result.content[0].text
        and "DELEGATE_FILE_ROOTS" in (result.content[0].text)
    )
    assert sim.history == []

    async def roots(context: Any) -> ListRootsResult:
        return ListRootsResult(roots=[Root(uri=project.as_uri(), name="project")])

    for mode in ("auto", "legacy"):
        sim.enqueue("sim-coder", "ok")
        result = await call(
            delegator, "ask_coder", {"task": "x", "files": ["README.md"]}, mode=mode, list_roots_callback=roots
        )
        assert result.structured_content["files"] == [{"path": "README.md", "chars": 10}], mode


async def test_the_working_directory_is_readable_by_default(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    sim.enqueue("sim-coder", "ok")
    result = await call(make_delegator(), "ask_coder", {"task": "x", "files": ["src/app.py"]})
    assert result.structured_content["files"] == [{"path": "src/app.py", "chars": 40}]


async def test_a_client_whose_roots_request_fails_is_still_answered_from_the_configured_roots(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, project: Path
) -> None:
    async def broken(context: Any) -> ErrorData:
        return ErrorData(code=-32603, message="roots are not available")

    sim.enqueue("sim-coder", "ok")
    result = await call(
        within_project(make_delegator, project),
        "ask_coder",
        {"task": "x", "files": ["README.md"]},
        mode="legacy",
        list_roots_callback=broken,
    )
    assert not result.is_error and result.structured_content["files"] == [{"path": "README.md", "chars": 10}]


async def test_a_call_without_files_never_asks_the_client_for_roots(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator
) -> None:
    asked = []

    async def roots(context: Any) -> ListRootsResult:
        asked.append(1)
        return ListRootsResult(roots=[])

    sim.enqueue("sim-coder", "ok")
    result = await call(make_delegator(), "ask_coder", {"task": "x"}, list_roots_callback=roots)
    assert not result.is_error and asked == []


# The command line, stdio and HTTP


@pytest.mark.subprocess
def test_ask_reads_files_given_with_the_file_flag(sim: ProviderSimulator, specialists_dir: Path, project: Path) -> None:
    from tests.test_console_script import run_cli, server_env

    sim.enqueue("sim-coder", "reviewed")
    env = server_env(sim, specialists_dir, DELEGATE_FILE_ROOTS=str(project))
    completed = run_cli(
        "ask", "Review", "--specialist", "coder", "--file", "src/app.py", "--file", "src/pkg/*.py", "--json", env=env
    )
    assert completed.returncode == 0, completed.stderr
    assert '"path": "src/pkg/util.py"' in completed.stdout
    assert "return 42" in sent_to(sim, "sim-coder") and "hello from app" in sent_to(sim, "sim-coder")
    refused = run_cli("ask", "Review", "--file", ".env", env=env)
    assert refused.returncode == 2 and "'.env'" in refused.stderr and "credentials" in refused.stderr
    assert len(sim.history) == 1


@pytest.mark.subprocess
def test_ask_reads_files_relative_to_the_folder_it_runs_in(
    sim: ProviderSimulator, specialists_dir: Path, project: Path
) -> None:
    from tests.test_console_script import script, server_env

    sim.enqueue("sim-coder", "ok")
    completed = subprocess.run(
        [script(), "ask", "Review", "--specialist", "coder", "--file", "README.md"],
        env=server_env(sim, specialists_dir),
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert "files read: README.md (10 chars)" in completed.stderr


@pytest.mark.subprocess
async def test_files_and_client_roots_over_stdio(
    sim: ProviderSimulator, specialists_dir: Path, project: Path, tmp_path: Path
) -> None:
    from tests.test_console_script import script, server_env

    async def roots(context: Any) -> ListRootsResult:
        return ListRootsResult(roots=[Root(uri=project.as_uri(), name="project")])

    home = tmp_path / "home"
    home.mkdir()
    env = server_env(sim, specialists_dir, HOME=str(home))
    params = StdioServerParameters(command=script(), env=env, cwd=str(home))
    sim.set_default("sim-coder", "ok")
    for mode in ("legacy", "auto"):
        async with Client(params, mode=mode, list_roots_callback=roots) as session:
            result = await session.call_tool("ask_coder", {"task": "x", "files": ["src/*.py"]})
            assert result.structured_content["files"] == [{"path": "src/app.py", "chars": 40}], mode
        async with Client(params, mode=mode) as session:
            refused = await session.call_tool("ask_coder", {"task": "x", "files": ["src/*.py"]})
            assert refused.is_error and "home folder" in refused.content[0].text, mode
    assert sim.count("sim-coder") == 2


@pytest.mark.subprocess
def test_files_over_http_come_only_from_the_servers_own_roots(
    sim: ProviderSimulator, specialists_dir: Path, project: Path, tmp_path: Path
) -> None:
    import socket
    import time

    import anyio
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    from tests.test_console_script import script, server_env
    from tests.test_http import TOKEN, free_port

    elsewhere = tmp_path / "client-folder"
    elsewhere.mkdir()
    (elsewhere / "notes.md").write_text("the client's own notes")
    port = free_port()
    env = server_env(sim, specialists_dir, DELEGATE_HTTP_TOKEN=TOKEN, DELEGATE_FILE_ROOTS=str(project))
    process = subprocess.Popen(
        [script(), "--transport", "http", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )

    async def roots(context: Any) -> ListRootsResult:
        return ListRootsResult(roots=[Root(uri=elsewhere.as_uri(), name="client")])

    async def calls() -> list[Any]:
        transport = streamable_http_client(
            f"http://127.0.0.1:{port}/mcp",
            http_client=httpx2.AsyncClient(headers={"authorization": f"Bearer {TOKEN}"}, timeout=30),
        )
        async with Client(transport, mode="legacy", list_roots_callback=roots) as session:
            read = await session.call_tool("ask_coder", {"task": "x", "files": ["src/app.py"]})
            refused = await session.call_tool("ask_coder", {"task": "x", "files": [str(elsewhere / "notes.md")]})
            return [read, refused]

    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        sim.set_default("sim-coder", "ok")
        read, refused = anyio.run(calls)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert read.structured_content["files"] == [{"path": "src/app.py", "chars": 40}]
    assert "hello from app" in sent_to(sim, "sim-coder")
    assert refused.is_error and "outside the allowed roots" in refused.content[0].text
    assert sim.count("sim-coder") == 1


@pytest.mark.subprocess
def test_route_counts_files_like_delegate_does(sim: ProviderSimulator, specialists_dir: Path, project: Path) -> None:
    from tests.test_console_script import run_cli, server_env

    (project / "big.txt").write_text("word " * 8_000)
    sim.set_default("sim-router", route_to("writer"))
    env = server_env(sim, specialists_dir, DELEGATE_FILE_ROOTS=str(project))
    without = run_cli("route", "Summarise", "--json", env=env)
    with_file = run_cli("route", "Summarise", "--file", "big.txt", "--json", env=env)
    assert without.returncode == 0 and with_file.returncode == 0, without.stderr + with_file.stderr
    tokens = [json.loads(done.stdout)["cost_estimate"]["input_tokens"] for done in (without, with_file)]
    assert tokens[1] > tokens[0] + 8_000, tokens
    assert "total_chars=40" in str(sim.calls("sim-router")[-1]["messages"])
    refused = run_cli("route", "Summarise", "--file", ".env", env=env)
    assert refused.returncode == 2 and "credentials" in refused.stderr


async def test_a_follow_up_in_a_thread_sees_the_files_as_they_were_read(
    make_delegator: Callable[..., Delegator], sim: ProviderSimulator, project: Path, tmp_path: Path
) -> None:
    delegator = within_project(make_delegator, project, store=str(tmp_path / "state.db"))
    sim.enqueue("sim-coder", "main returns a greeting")
    first = await call(delegator, "ask_coder", {"task": "What does main return?", "files": ["src/app.py"]})
    assert not first.is_error, first.content[0].text
    (project / "src" / "app.py").write_text("changed after the first turn\n")
    sim.enqueue("sim-coder", "here are tests")
    thread_id = first.structured_content["thread_id"]
    second = await call(delegator, "ask_coder", {"task": "Now add tests", "thread_id": thread_id})
    assert not second.is_error, second.content[0].text
    assert second.structured_content["files"] == [], "a follow-up reads no file it did not name"
    received = sent_to(sim, "sim-coder")
    assert "hello from app" in received and "changed after the first turn" not in received
    assert received.index("hello from app") < received.index("main returns a greeting") < received.index("Now add")
