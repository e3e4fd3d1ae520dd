"""README.md as a newcomer uses it: every fenced code block is checked here, or the test
says why it is not run.

- `python` blocks run as written (only the URL is pointed at a test hub), as a separate
  process against a hub playing the demo replay; their output is read.
- `sh` blocks: each command is split at `&&` and each step is checked: `heatmap-hub`
  commands run (a server comes up and answers /health on a free port; every command's
  `--help` works and lists the flags README uses); the set-up steps (venv, pip install,
  pytest) are what `.ci/run` runs on a fresh machine, so this test checks that `.ci/run`
  runs README's test command verbatim and that what it installs exists.
- `text` blocks are pictures, not commands.
A block or a step with no check here fails the test.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import signal
import sys
import tomllib
from pathlib import Path
from typing import IO, NamedTuple

import httpx

from hub.config import FIELD_TO_VARIABLE, Settings
from tests.conftest import HubFactory, http_client
from tests.test_cli import hub_process, run_cli

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
DEFAULT_WS_URL = "ws://127.0.0.1:5000/ws"

# Steps of README's shell commands that are not run here, and why that is enough.
SETUP_STEPS = {
    "python3 -m venv .venv": "makes the virtual environment; .ci/run runs it first",
    ".venv/bin/pip install -e .": "installs the package; .ci/run installs it with the test "
    "extra, which is a superset",
    ".venv/bin/pip install -e '.[test]'": "installs the package and the test extra; .ci/run "
    "runs it",
    ".venv/bin/python -m pytest": "runs this very suite; .ci/run runs it",
}
NOT_RUN = {"text": "a picture (the architecture), not a command"}


class Block(NamedTuple):
    language: str
    text: str
    line: int  # of the opening fence, 1-based


def readme_blocks() -> list[Block]:
    blocks = []
    fence = re.compile(r"^```(\S*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
    text = README.read_text(encoding="utf-8")
    for match in fence.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(Block(match.group(1), match.group(2), line))
    return blocks


def shell_commands() -> list[str]:
    """Every command line of README's `sh` blocks (comments and blank lines dropped)."""
    commands = []
    for block in readme_blocks():
        if block.language == "sh":
            for line in block.text.splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    commands.append(line)
    return commands


def steps() -> list[str]:
    return [step.strip() for command in shell_commands() for step in command.split("&&")]


def hub_steps() -> list[list[str]]:
    """The `.venv/bin/heatmap-hub ...` steps as argument lists (without the program)."""
    return [shlex.split(step)[1:] for step in steps() if step.startswith(".venv/bin/heatmap-hub ")]


def test_every_block_and_step_has_a_check() -> None:
    blocks = readme_blocks()
    assert blocks, "README.md has no fenced code blocks: did the fence syntax change?"
    for block in blocks:
        assert block.language in ("python", "sh", *NOT_RUN), (
            f"README.md line {block.line}: a {block.language or 'plain'!r} block, which "
            "tests/test_readme.py does not check; mark it ```python, ```sh or ```text"
        )
    for step in steps():
        assert step in SETUP_STEPS or step.startswith(".venv/bin/heatmap-hub "), (
            f"README step {step!r} is neither run nor accounted for in tests/test_readme.py"
        )
    assert any(b.language == "python" for b in blocks), "README lost its WebSocket client"
    assert hub_steps(), "README no longer shows how to start the hub"


def test_ci_runs_exactly_the_readme_test_command() -> None:
    test_commands = [c for c in shell_commands() if "pytest" in c]
    assert len(test_commands) == 1, f"expected one test command in README, saw {test_commands}"
    ci_lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    assert test_commands[0] in ci_lines, (
        f".ci/run must run README's test command as written: {test_commands[0]!r}"
    )


def test_what_the_setup_installs_exists() -> None:
    """`pip install -e .` / `-e '.[test]'` install this project with its `test` extra and
    the `heatmap-hub` program, which is `hub.cli:main`, the CLI `python -m hub` runs too."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "test" in project["optional-dependencies"]
    assert project["scripts"]["heatmap-hub"] == "hub.cli:main"
    assert "from hub.cli import main" in (ROOT / "hub/__main__.py").read_text()
    installs = [s for s in steps() if s.startswith(".venv/bin/pip install")]
    assert installs and all(s in SETUP_STEPS for s in installs), installs


def test_each_readme_command_has_working_help_naming_its_flags() -> None:
    for args in hub_steps():
        command = args[0]
        result = run_cli(command, "--help")
        assert result.returncode == 0, f"heatmap-hub {command} --help: {result.stderr}"
        for flag in (a for a in args[1:] if a.startswith("--")):
            assert flag in result.stdout, f"README uses {flag}; `{command} --help` lacks it"


async def test_readme_servers_come_up_and_answer_health() -> None:
    servers = [args for args in hub_steps() if args[0] in ("serve", "web")]
    assert servers, "README starts no server"
    for args in servers:
        async with hub_process(*args) as (process, port, log):
            async with http_client() as client:
                health = await _wait_for_health(client, f"http://127.0.0.1:{port}", process, log)
                assert health == {"success": True, "data": {"status": "ok"}}
                page = await client.get(f"http://127.0.0.1:{port}/")
                assert page.status_code == 200 and "<html" in page.text.lower()
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 15) == 0


async def _wait_for_health(
    client: httpx.AsyncClient, base: str, process: asyncio.subprocess.Process, log: IO[bytes]
) -> object:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        if process.returncode is not None:
            log.seek(0)
            error = log.read().decode(errors="replace")
            raise AssertionError(f"the hub exited with {process.returncode}: {error}")
        try:
            response = await client.get(f"{base}/health")
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass
        # The demo lays its whole session into the past before it listens: generous.
        assert loop.time() < deadline, f"{base}/health did not answer within 60 s"
        await asyncio.sleep(0.1)


async def test_python_client_runs_against_the_demo(start_hub: HubFactory, tmp_path: Path) -> None:
    hub = await start_hub(Settings(), demo=True)
    for number, block in enumerate(b for b in readme_blocks() if b.language == "python"):
        assert block.text.count(DEFAULT_WS_URL) == 1, (
            f"README.md line {block.line}: expected the client to connect to {DEFAULT_WS_URL}"
        )
        script = tmp_path / f"client_{number}.py"
        script.write_text(block.text.replace(DEFAULT_WS_URL, hub.ws))
        lines = await _first_lines(script, 4)
        assert lines[0].startswith("subscribed"), f"first line {lines[0]!r}; all: {lines}"
        assert any(" snapshot " in line for line in lines), f"no snapshot in {lines}"


async def _first_lines(script: Path, count: int) -> list[str]:
    """The first `count` lines the script prints; fails if it exits or says nothing."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-u",
        str(script),
        cwd=script.parent,  # the client stands alone: no `hub` package on its path
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    lines: list[str] = []
    try:
        while len(lines) < count:
            try:
                line = await asyncio.wait_for(process.stdout.readline(), 20)
            except TimeoutError:
                raise AssertionError(f"no output for 20 s after {lines}") from None
            if not line:
                error = (await process.stderr.read()).decode()
                raise AssertionError(f"the client exited after {lines}: {error}")
            lines.append(line.decode().strip())
    finally:
        if process.returncode is None:
            process.kill()
        # Read what is left: a pipe with unread output never reaches EOF, and `wait`
        # would wait for it for ever.
        await process.communicate()
    return lines


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", markdown, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_links_of_readme_and_docs_lead_somewhere() -> None:
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    assert len(pages) > 1, "README points to docs/, which has no pages"
    for page in pages:
        text = re.sub(r"^```.*?^```$", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
        broken = re.findall(r"\]\([^)]*\s[^)]*\)", text)
        assert not broken, f"{page.relative_to(ROOT)}: a link target broken by a space: {broken}"
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)} links to {target!r}"
            assert linked.exists(), f"{where}: no such file"
            if anchor:
                assert anchor in anchors(linked.read_text()), f"{where}: no such heading"


def test_configuration_doc_names_every_variable() -> None:
    documented = (ROOT / "docs/configuration.md").read_text()
    missing = sorted(v for v in FIELD_TO_VARIABLE.values() if f"`{v}`" not in documented)
    assert not missing, f"docs/configuration.md does not describe {missing}"
