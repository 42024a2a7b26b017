"""The README and docs/ name only command-line flags the scripts accept, and link only files and headings that exist.

Commands are read from fenced code blocks (one logical line each, `\\` continuations joined) and from inline code that
runs a script (`python x.py ...` or `x.py ...`): every `--flag` after the script must be one that script accepts. A
quoted configuration such as `"name=python rlx2_td3.py --no-cuda"` is a command too. A flag named alone in inline code
(`--n-step`) must be accepted by some script of the repository; another program's flags (the released code's) are
named with that program (`RLx2_TD3/train.py --nstep 3`), whose flags are not checked. A script's flags: its tyro `Args`
dataclass (field `foo_bar` gives `--foo-bar`, a bool also `--no-foo-bar`), or its `add_argument("--...")` calls.
"""

import dataclasses
import functools
import importlib.util
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
WRAPPER = "benchmarks/profile_step.py"  # `profile_step.py SCRIPT ARGS...`: the flags are SCRIPT's
MODULES = {"common.export": "common/export.py"}  # `python -m MODULE` of this repository


def training_scripts() -> list[str]:
    return sorted(path.name for path in ROOT.glob("*.py"))


def tool_scripts() -> list[str]:
    benchmarks = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "benchmarks").glob("*.py"))]
    reproduce = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "reproduce").glob("*.py"))]
    return [*reproduce, *MODULES.values(), *(b for b in benchmarks if b != WRAPPER)]


@functools.cache
def accepted_flags(script: str) -> frozenset[str]:
    """The flags `python SCRIPT --help` would list, from the script's source (tyro's naming rules for its Args)."""
    path = ROOT / script
    source = path.read_text()
    flags = set()
    if re.search(r"^\s+args = tyro\.cli\(Args\b", source, re.MULTILINE):
        spec = importlib.util.spec_from_file_location(f"docs_check_{script.replace('/', '_')[:-3]}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # definitions only: the scripts run under `if __name__ == "__main__"`
        for field in dataclasses.fields(module.Args):
            flag = "--" + field.name.replace("_", "-")
            flags.add(flag)
            if field.type in (bool, "bool"):
                flags.add("--no-" + flag[2:])
    flags.update(re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", source))
    if flags:
        flags.add("--help")
    return frozenset(flags)  # empty for a module with no command line


@functools.cache
def any_training_flag() -> frozenset[str]:
    return frozenset().union(*(accepted_flags(s) for s in training_scripts()))


@functools.cache
def any_flag() -> frozenset[str]:
    return any_training_flag().union(*(accepted_flags(s) for s in tool_scripts()))


def flag_of(token: str) -> str | None:
    token = token.strip("[](),")
    return token.split("=", 1)[0] if re.match(r"--[a-z0-9]", token) else None


def check_command(command: str, where: str) -> tuple[list[str], int]:
    """Problems with the flags of one shell command line, and how many flags were checked."""
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=";&")
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:  # an unclosed quote: prose, not a command
        return [], 0
    problems, checked, segment = [], 0, []
    for token in [*tokens, ";"]:
        if token not in (";", "&&", "&", "||"):
            segment.append(token)
            continue
        allowed = flags_of_segment(segment)
        for i, token in enumerate(segment):
            if " " in token and ".py" in token:  # a quoted command: "NAME=python x.py ARGS" or "NAME=x.py ARGS"
                name, _, inner = token.partition("=")
                more, n = check_command(inner if re.fullmatch(r"[\w.+-]+", name) else token, where)
                problems, checked = problems + more, checked + n
            flag = flag_of(token)
            if flag is None or allowed is None or i < first_flag_position(segment):
                continue
            checked += 1
            if flag not in allowed:
                problems.append(f"{where}: {flag} is not a flag of {describe(segment)}: {command.strip()[:120]}")
            value = token.partition("=")[2]
            # --extra-args="--eval-episodes 5": flags for the runs' scripts (not --released-args: the released code's)
            if value.startswith("--") and flag != "--released-args":
                for inner_flag in filter(None, map(flag_of, value.split())):
                    checked += 1
                    if inner_flag not in any_training_flag():
                        problems.append(f"{where}: {inner_flag} is not a flag of any training script: {command.strip()[:120]}")
        segment = []
    return problems, checked


def script_of(segment: list[str]) -> tuple[int, str | None] | None:
    """(position, script relative to the root) of the script a segment runs; script None for an unknown one (another
    repository's); None if it runs no Python script."""
    for i, token in enumerate(segment):
        if token == "-m" and i + 1 < len(segment):
            module = segment[i + 1]
            return i + 1, MODULES.get(module)
        if token.endswith(".py") and " " not in token:
            script = token.removeprefix("./")
            return i, script if (ROOT / script).is_file() else None
    return None


def first_flag_position(segment: list[str]) -> int:
    found = script_of(segment)
    if found is None:
        return 0
    position, script = found
    if script == WRAPPER and position + 1 < len(segment):
        return position + 2
    return position + 1


def flags_of_segment(segment: list[str]) -> frozenset[str] | None:
    """The flags a command segment may use; None when it is not ours to check."""
    found = script_of(segment)
    if found is None:
        # `python SCRIPT --env-id ENV`: a placeholder for any of the training scripts
        placeholder = "python" in segment and any(re.fullmatch(r"[A-Z]+", t) for t in segment)
        return any_training_flag() if placeholder else None
    position, script = found
    if script == WRAPPER:
        target = segment[position + 1] if position + 1 < len(segment) else ""
        if (ROOT / target).is_file():
            return accepted_flags(target)
        return any_training_flag() if re.fullmatch(r"[A-Z]+", target) else None
    return accepted_flags(script) if script else None


def describe(segment: list[str]) -> str:
    found = script_of(segment)
    return found[1] if found and found[1] else "any training script"


def code_blocks_and_prose(text: str) -> tuple[list[str], list[str]]:
    """The logical lines of fenced code blocks, and the lines outside them."""
    code, prose, inside = [], [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
            continue
        (code if inside else prose).append(line)
    joined = "\n".join(code).replace("\\\n", " ")
    return joined.splitlines(), prose


def inline_code(prose: list[str]) -> list[str]:
    """Inline code spans; a span may wrap onto the next line."""
    return [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", "\n".join(prose))]


def check_flags(text: str, where: str) -> tuple[list[str], int]:
    code, prose = code_blocks_and_prose(text)
    problems, checked = [], 0
    for line in code:
        more, n = check_command(line, where)
        problems, checked = problems + more, checked + n
    for span in inline_code(prose):
        if re.search(r"(^|\s|/)[\w/.-]+\.py(\s|$)", span) or span.startswith("python "):
            more, n = check_command(span, where)
            problems, checked = problems + more, checked + n
        elif span.startswith("--"):  # flags named without their script: some script must accept each
            more, n = check_flags_alone(span, where)
            problems, checked = problems + more, checked + n
    return problems, checked


def check_flags_alone(span: str, where: str) -> tuple[list[str], int]:
    try:
        tokens = shlex.split(span)
    except ValueError:
        tokens = span.split()
    problems, checked = [], 0
    for token in tokens:
        if " " in token and ".py" in token:  # --config "name=sparse_td3.py --sparsity 0"
            more, n = check_command(token.partition("=")[2], where)
            problems, checked = problems + more, checked + n
        elif flag := flag_of(token):
            checked += 1
            if flag not in any_flag():
                problems.append(f"{where}: `{span}` names {flag}, a flag of no script")
    return problems, checked


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    _, prose = code_blocks_and_prose(path.read_text())
    seen: dict[str, int] = {}
    result = set()
    for line in prose:
        if match := re.match(r"#{1,6}\s+(.*)", line):
            base = slug(match.group(1))
            result.add(base if base not in seen else f"{base}-{seen[base]}")
            seen[base] = seen.get(base, 0) + 1
    return result


def check_links(text: str, path: Path) -> tuple[list[str], int]:
    _, prose = code_blocks_and_prose(text)
    prose_text = re.sub(r"`[^`]*`", "", "\n".join(prose))
    problems, checked = [], 0
    for target in re.findall(r"\]\(([^)\s]+)\)", prose_text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        checked += 1
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        if not resolved.exists():
            problems.append(f"{path.name}: link to {target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{path.name}: link to {target}: no such heading in {resolved.name}")
    return problems, checked


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_name_only_accepted_flags_and_existing_links(path):
    text = path.read_text()
    flag_problems, flags_checked = check_flags(text, str(path.relative_to(ROOT)))
    link_problems, links_checked = check_links(text, path)
    assert not flag_problems + link_problems, "\n".join(flag_problems + link_problems)
    if path.name != "report.md":  # a generated report names no flags
        assert flags_checked + links_checked > 0, "nothing checked: is the parser still reading this page?"


def test_the_checker_finds_made_up_flags_and_broken_links(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# A page\n\n## Usage\n\n```bash\npython sparse_td3.py --seed 2 --made-up-flag 3   # comment\n"
        'python benchmarks/speed.py --config \\\n  "a=python rlx2_td3.py --sparse-backend kernel --also-made-up"\n'
        'python reproduce/sweep.py --preset first-reproduction --extra-args="--eval-episodes 5 --nope"\n```\n\n'
        "Run `sparse_sac.py --autotune --topology-interval 5 --n-step 3`, then `--no-such-flag`, or `--n-step 2`.\n"
        "See [here](missing.md), [there](page.md#usage), [nowhere](page.md#no-such-heading) and [web](https://x.org).\n"
    )
    flag_problems, checked = check_flags(page.read_text(), "page.md")
    flagged = {re.search(r"--[\w-]+", p).group() for p in flag_problems}
    assert flagged == {"--made-up-flag", "--also-made-up", "--nope", "--n-step", "--no-such-flag"}, flag_problems
    assert checked == 14
    link_problems, _ = check_links(page.read_text(), page)
    assert len(link_problems) == 2 and "missing.md" in link_problems[0] and "no-such-heading" in link_problems[1]


# Words that speak of how the project was made (its work sessions, its machines, its hopes) rather than of the code and
# its results. A results folder's history.md is the page meant to hold its runs' history, and may use them.
MAKING_OF = ("session", "digit for digit", "this project's machines", "we aimed for", "undated in", "notebook",
             "until now", "so far")  # fmt: skip
RUN_HISTORIES = sorted((ROOT / "docs" / "results").glob("*/history.md"))


def making_of(text: str) -> list[str]:
    return [phrase for phrase in MAKING_OF if re.search(rf"\b{re.escape(phrase)}s?\b", text, re.IGNORECASE)]


@pytest.mark.parametrize("path", [p for p in DOCS if p not in RUN_HISTORIES], ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_speak_of_the_code_not_of_how_it_was_made(path):
    assert not making_of(path.read_text()), f"{path.relative_to(ROOT)}: {making_of(path.read_text())}"


def test_the_making_of_check_finds_its_words():
    assert making_of("Run at two threads (every session so far); x1.25, not the x1.5 we aimed for.") == [
        "session", "we aimed for", "so far"]  # fmt: skip
    assert making_of("Two sessions.") == ["session"] and making_of("the sofa; so farther") == [] and RUN_HISTORIES


# The repository's own top-level entries: anything else tracked (a run's `runs/`, the released code's `results_TD3/` or
# `models/` written to the working directory) is output that slipped into a commit.
TOP_LEVEL = {".ci", ".gitignore", "CITATION.cff", "LICENSE", "README.md", "benchmarks", "common", "docs", "pyproject.toml",
             "reproduce", "requirements-dev.txt", "requirements.txt", "rlx2_sac.py", "rlx2_td3.py", "sparse_sac.py",
             "sparse_td3.py", "tests"}  # fmt: skip


def test_the_repository_tracks_its_own_files_only():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode()
    paths = [path for path in tracked.split("\0") if path]
    assert sorted({path.split("/")[0] for path in paths} - TOP_LEVEL) == []
    assert [path for path in paths if (ROOT / path).is_file() and (ROOT / path).stat().st_size > 2**20] == []  # < 1 MiB
