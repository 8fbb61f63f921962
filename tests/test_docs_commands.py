"""Every ``lupusbayes ...`` command the README, the docs and the ``--help`` epilogs show runs as written.

The commands are collected from the README's shell blocks, the docs' ``console`` blocks (``$ ...``
lines, with the output under them) and plain blocks that hold command lines, and the examples of
``lupusbayes --help`` and of every command's ``--help``. Each block runs in a fresh folder holding
the files the docs tell the reader to make (the shipped example cohorts, an editable spec, a
scenario file, a fit); commands of one block share it, in order, as in a terminal.

Each command must parse and exit as the docs say (0 unless an ``echo $?`` shows another code).
Where the docs show output, it is compared line by line (``...`` stands for any lines): exactly
for commands that do not sample; for commands whose output comes from MCMC, which runs here with
mock sampling (prior draws for NUTS), with numbers masked and the convergence gate's lines left
out. What cannot run here is named in :data:`NOT_RUN` with the reason; simulations run with at most
:data:`SIMULATED_TRIALS` trials (the numbers are not compared).
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lupusbayes.cli import COMMANDS, main
from lupusbayes.cohort import EXAMPLE_COHORTS, example_cohort_text

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: Commands not run here, by a piece of their text, and why.
NOT_RUN = {
    "--dask tcp://": "needs a Dask cluster",
    "lupusbayes demo": "the whole pipeline (minutes): tests/test_cli.py runs it",
}
#: A synopsis names its arguments in capitals (``lupusbayes fit SPEC``): not a command to run.
PLACEHOLDER = re.compile(r"(^|\s)\[?[A-Z]{1,}[A-Z_]*\]?(\s|$)")
#: Pages whose commands another check runs: the gallery's run in the docs build (scripts/make_gallery.py).
PAGES_RUN_ELSEWHERE = {"gallery.md"}
#: Trials per scenario and design in the simulations run here (the docs show larger runs).
SIMULATED_TRIALS = 20
#: Commands whose output comes from MCMC (here mock sampling): numbers masked, gate lines left out.
SAMPLING = {"fit", "check", "report", "simulate", "plot"}
GATE_WORDS = ("[ok", "[FAIL", "gate", "FAILED", "PASSED", "FORCED")


@dataclass
class Command:
    line: str
    expected: list[str] = field(default_factory=list)  # shown output; empty: none shown
    exit_code: int | None = None  # from a following ``echo $?``


@dataclass
class Block:
    where: str
    commands: list[Command]


def _console_block(where: str, text: str) -> Block:
    commands: list[Command] = []
    for line in text.splitlines():
        if line.startswith("$ echo $?"):
            commands[-1].exit_code = -1  # the next output line holds it
        elif line.startswith("$ "):
            commands.append(Command(line[2:]))
        elif commands and commands[-1].exit_code == -1:
            commands[-1].exit_code = int(line.strip())
        elif commands:
            commands[-1].expected.append(line)
    return Block(where, [command for command in commands if command.line.startswith("lupusbayes ")])


def _command_block(where: str, text: str) -> Block:
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("lupusbayes ")]
    return Block(where, [Command(re.split(r"\s{2,}", line)[0]) for line in lines])  # a description may follow


def _doc_blocks() -> list[Block]:
    blocks = []
    for page in PAGES:
        if page.name in PAGES_RUN_ELSEWHERE:
            continue
        for match in re.finditer(r"```(\w*)\n(.*?)```", page.read_text(encoding="utf-8"), re.S):
            language, text = match.group(1), match.group(2)
            line = page.read_text(encoding="utf-8")[: match.start()].count("\n") + 1
            where = f"{page.name}:{line}"
            block = _console_block(where, text) if language == "console" else (
                _command_block(where, text) if language in ("bash", "text", "") else None)
            if block is not None and block.commands:
                blocks.append(block)
    return blocks


def _help_blocks() -> list[Block]:
    import contextlib
    import io

    blocks = []
    for command in ["", *COMMANDS]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            main([command, "--help"] if command else ["--help"])
        examples = out.getvalue().split("examples:", 1)
        if len(examples) == 2:
            lines = [line.strip() for line in examples[1].splitlines() if line.strip().startswith("lupusbayes ")]
            # the main epilog puts a description after two or more spaces
            blocks.append(Block(f"lupusbayes {command} --help".replace("  ", " "),
                                [Command(re.split(r"\s{2,}", line)[0]) for line in lines]))
    return blocks


BLOCKS = _doc_blocks() + _help_blocks()


def test_the_docs_and_the_help_show_commands_to_run():
    wheres = {block.where.split(":")[0] for block in BLOCKS}
    assert {"README.md", "cli.md", "decisions.md", "lupusbayes --help", "lupusbayes simulate --help"} <= wheres
    assert sum(len(block.commands) for block in BLOCKS) > 40


def _mask(line: str) -> str:
    return re.sub(r"\d+(\.\d+)?(e[+-]?\d+)?", "#", line.rstrip())


def _same_line(shown: str, printed: str) -> bool:
    """The docs' line is the printed one; ``...`` inside a line stands for any text (a hash, a time)."""
    if "..." not in shown:
        return shown == printed
    pattern = ".*".join(re.escape(piece) for piece in shown.split("..."))
    return re.fullmatch(pattern, printed) is not None


def _matches(expected: list[str], actual: list[str], *, sampled: bool) -> str | None:
    """None when ``actual`` shows what ``expected`` shows (``...``: any lines), else the first difference."""
    if sampled:
        expected = [_mask(line) for line in expected if not any(word in line for word in GATE_WORDS)]
        actual = [_mask(line) for line in actual]
    else:
        expected, actual = [line.rstrip() for line in expected], [line.rstrip() for line in actual]
    position = 0
    skipping = False
    for line in expected:
        if line.strip() == "...":
            skipping = True
            continue
        if skipping or sampled:  # sampled output: the shown lines, in order, among others
            while position < len(actual) and not _same_line(line, actual[position]):
                position += 1
            if position == len(actual):
                return f"not shown by the command: {line!r}"
        elif position >= len(actual) or not _same_line(line, actual[position]):
            return f"expected {line!r}, got {actual[position] if position < len(actual) else 'nothing'!r}"
        position += 1
        skipping = False
    return None


def _prepare(folder: Path, block: Block, crs_fit_file: Path) -> None:
    for name in EXAMPLE_COHORTS:
        (folder / f"{name}.csv").write_text(example_cohort_text(name), encoding="utf-8")
    (folder / "bad.csv").write_text("patient_id,age_years,sex,dose,crs_grade,visit_month,sledai\n"
                                    "P1,14,F,3e9,0,0,12\nP2,16,M,4.5e9,VI,0,10\n", encoding="utf-8")
    (folder / "models").mkdir()
    for spec in (ROOT / "models").glob("*.toml"):
        shutil.copy(spec, folder / "models" / spec.name)
    shipped = ROOT / "src" / "lupusbayes" / "data" / "scenarios" / "axa_nk02.toml"
    shutil.copy(shipped, folder / "my_scenarios.toml")
    if not any("--out crs.nc" in command.line for command in block.commands):
        shutil.copy(crs_fit_file, folder / "crs.nc")


def _argv(line: str) -> tuple[list[str], str | None]:
    """The arguments of a command line (without ``lupusbayes``) and the file its stdout goes to."""
    words = shlex.split(line, comments=True)[1:]
    redirect = None
    if ">" in words:
        at = words.index(">")
        words, redirect = words[:at], words[at + 1]
    if "--n-trials" in words:
        at = words.index("--n-trials") + 1
        words[at] = str(min(int(words[at]), SIMULATED_TRIALS))
    elif words and words[0] == "simulate":
        words += ["--n-trials", str(SIMULATED_TRIALS)]
    return words, redirect


@pytest.fixture(scope="module")
def crs_fit_file(tmp_path_factory):
    """``crs.nc`` as the docs make it (``lupusbayes fit kn5601 --data kn5601 --model crs ...``), mock-sampled."""
    from conftest import mock_run_sampler

    from lupusbayes.fitting import sample as sampling

    path = tmp_path_factory.mktemp("fit") / "crs.nc"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sampling, "run_sampler", mock_run_sampler)
        patch.setenv("LUPUSBAYES_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        code = main(["fit", "kn5601", "--data", "kn5601", "--model", "crs", "--out", str(path), "--seed", "1",
                     "--chains", "2", "--draws", "300", "--tune", "0"])
    assert code in (0, 3) and path.is_file()
    return path


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.where)
def test_every_command_shown_runs_as_written(block, tmp_path, monkeypatch, capsys, mock_sampling, crs_fit_file):
    monkeypatch.chdir(tmp_path)
    _prepare(tmp_path, block, crs_fit_file)
    for command in block.commands:
        reason = next((why for text, why in NOT_RUN.items() if text in f"{command.line} "), None)
        if reason is not None or PLACEHOLDER.search(command.line.split("#")[0]):
            continue
        argv, redirect = _argv(command.line)
        sampled = (argv[0] in SAMPLING or "--codata" in argv
                   or (argv[0] == "decide" and "--outcomes" not in argv))  # the posterior comes from MCMC
        code = main(argv)
        captured = capsys.readouterr()
        if redirect is not None:
            Path(redirect).write_text(captured.out, encoding="utf-8")
        error_shown = bool(command.expected) and command.expected[0].startswith("lupusbayes: error:")
        wanted = {command.exit_code} if command.exit_code is not None else {2 if error_shown else 0}
        if sampled:
            wanted |= {0, 3}  # mock sampling may pass a gate the docs show failing, and the other way
        assert code in wanted, f"{block.where}: `{command.line}` exited {code}:\n{captured.err}"
        if command.expected and redirect is None:
            shown = (captured.out + captured.err).splitlines()
            problem = _matches(command.expected, shown, sampled=sampled)
            assert problem is None, f"{block.where}: `{command.line}`: {problem}\n--- output:\n" + "\n".join(shown)
