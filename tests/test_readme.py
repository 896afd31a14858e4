"""Every command the README and its pages show still works: its options are parsed and checked by the program that
takes them.

The pages are README.md, every page under docs/ and tests/README.md. The commands are the lines of their ```bash
blocks, and the commands written inline in their prose that start with python, pip, make or bash. None of them is run
for real (most train for minutes or hours); instead:
- `python ddpg.py ...`: parsed by tyro into ddpg.Args and checked by ddpg.check_args and ddpg.check_env, as ddpg.py
  does before any work;
- `python benchmarks/<script>.py ...`: parsed by the script's own argparse parser (sweep.py's through its
  parse_args, with its checks); the ddpg.py options that sweep.py and pendulum.py pass on are checked as above;
- `make <target>`: the target exists, and every command of its recipe (`make -n`) is checked the same way;
- `pip install -r FILE`, `python -m pytest PATH`, `bash SCRIPT`: the files exist (and the script is valid bash);
  `pip install torch==VERSION ...` and `pip uninstall -y torch` name the torch of requirements.txt;
- tensorboard, wandb and ray: parsed by their own command-line parsers (wandb and ray where installed);
- system tools (srun, chmod, ...) are not ours to check. A program the test does not know fails it: teach it here.

Placeholders: `runs/<run>` stands for a real run directory (made by a tiny run), `[--flag]` is checked with and
without the flag, `[-- more ddpg.py options]` is left out, and shell variables (`$head_ip`) stand for `1`, which
parses as a number and as a word.

Each ```python block runs, as a reader would run it from the repository's root. Every link to a file of the
repository, and to a heading of a page, leads somewhere; the README links every page and stays within 200 lines.
"""

import argparse
import dataclasses
import glob
import importlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings

import pytest
import tyro

import ddpg
import population
from tests.conftest import ROOT

PAGES = ["README.md", *sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md"))),
         os.path.join("tests", "README.md")]  # fmt: skip
TEXT = {page: open(os.path.join(ROOT, page)).read() for page in PAGES}
README_MAX_LINES = 200  # what a newcomer reads in five minutes; the reference is on the pages it links
BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
FENCED = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"\]\(([^()\s]+)\)")  # [text](target) and ![alt](target)
# benchmarks/<name>.py, importable (conftest)
BENCHMARK_SCRIPTS = ("bench", "gif", "pendulum", "report", "seeds", "sweep")
SYSTEM_TOOLS = {"awk", "chmod", "expand", "export", "find", "grep", "hostname", "rm", "sbatch", "scontrol", "sed",
                "set", "sleep", "source", "ufw"}  # fmt: skip
WRAPPERS = {"srun"}  # run the command that follows their own options: that command is checked
SHELL_KEYWORDS = {"for", "do", "done", "if", "then", "else", "fi", "while"}
INLINE_PROGRAMS = ("python", "pip", "make", "bash")  # inline code that starts with one of these is a command
PROSE = ["[-- more ddpg.py options]"]  # placeholders left out
OPTIONAL_FLAG = re.compile(r"\[(--[\w-]+)\]")  # `[--capture-video]`: checked with and without it
RUN_PLACEHOLDER = "runs/<run>"  # a run directory: a real one stands in for it
VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")  # a shell variable: `1` stands in for it
SUBSTITUTION = re.compile(r"\$\(([^()]*)\)")  # $(command): a command of its own, and a value where it stands
REDIRECTION = re.compile(r"(?<=\s)\d*>>?\s*(&\d+|\S+)")  # `> /dev/null`, `2>&1`
SEPARATORS = {"&&", "||", ";", "|", "&"}
PROGRAMS = {"python", "pip", "make", "bash", "tensorboard", "wandb", "ray"}  # checked by Checker below


# ---------------------------------------------------------------------------------------------------------------
# The README's commands


def logical_lines(code: str, first_line: int):
    """(line number, line) of shell code, lines continued with a backslash joined, comment lines dropped."""
    pending, start = "", None
    for number, line in enumerate(code.splitlines(), first_line):
        start = start or number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.strip() and not line.lstrip().startswith("#"):
            yield start, line
        start = None


def prose(text: str) -> str:
    """The text with its fenced blocks blanked out (their lines kept, so that line numbers stay)."""
    return FENCED.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def page_commands(page: str) -> list[tuple[str, str]]:
    """(where, command line) of each command on a page: the bash blocks' lines, then the inline commands."""
    found, text = [], TEXT[page]
    for block in BASH_BLOCK.finditer(text):
        first_line = text.count("\n", 0, block.start(1)) + 1
        found += [(f"{page}:{n}", line) for n, line in logical_lines(block.group(1), first_line)]
    without_blocks = prose(text)
    for span in re.finditer(r"`([^`]+)`", without_blocks):
        command = " ".join(span.group(1).split())
        if command.split()[0] in INLINE_PROGRAMS:
            found.append((f"{page}:{without_blocks.count(chr(10), 0, span.start()) + 1}", command))
    return found


COMMANDS = [command for page in PAGES for command in page_commands(page)]
BASH_BLOCKS = [(page, block) for page in PAGES for block in BASH_BLOCK.findall(TEXT[page])]
PYTHON_BLOCKS = [(page, block) for page in PAGES for block in PYTHON_BLOCK.findall(TEXT[page])]


def variants(line: str) -> list[str]:
    """The command line with its placeholders resolved: one line, or two for an optional flag."""
    for prose in PROSE:
        line = line.replace(prose, "")
    if OPTIONAL_FLAG.search(line):
        return [OPTIONAL_FLAG.sub("", line), OPTIONAL_FLAG.sub(r"\1", line)]
    return [line]


def simple_commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line, as argument lists: split at && || ; | &, substitutions taken out as
    commands of their own, redirections, leading variable assignments and shell keywords dropped."""
    inner = []
    while SUBSTITUTION.search(line):
        inner += SUBSTITUTION.findall(line)
        line = SUBSTITUTION.sub("1", line)
    lexer = shlex.shlex(REDIRECTION.sub("", line), posix=True, punctuation_chars=";&|")
    lexer.whitespace_split, lexer.commenters = True, "#"
    commands, current, in_for = [], [], False
    for token in [*lexer, ";"]:
        if token in SEPARATORS:
            if current and not in_for:
                commands.append(current)
            current, in_for = [], False
        elif token in SHELL_KEYWORDS and not current:
            in_for = token == "for"  # `for NAME in WORDS`: no command
        elif re.fullmatch(r"\w+=.*", token) and not current:  # VAR=value before a command, or alone
            continue
        else:
            current.append(VARIABLE.sub("1", token))
    return [c for command in inner for c in simple_commands(command)] + commands


# ---------------------------------------------------------------------------------------------------------------
# Checks, by program


def program_name(word: str) -> str:
    """`.venv/bin/python3` -> `python`."""
    name = os.path.basename(word)
    return "python" if re.fullmatch(r"python3?(\.\d+)?", name) else name


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real run directory, with a checkpoint and a saved model, for `runs/<run>`."""
    cwd, where = os.getcwd(), tmp_path_factory.mktemp("readme")
    os.chdir(where)
    try:
        out = ddpg.train(ddpg.Args(total_timesteps=2, learning_starts=1, batch_size=1, eval_episodes=1,
                                   checkpoint_frequency=1, cuda=False))  # fmt: skip
    finally:
        os.chdir(cwd)
    assert out["status"] == 0
    return str(where / out["run_dir"])


class Checker:
    def __init__(self, run_dir: str, monkeypatch, tmp_path):
        self.run_dir, self.monkeypatch, self.tmp_path = run_dir, monkeypatch, tmp_path

    def check_line(self, line: str) -> None:
        for command in simple_commands(line.replace(RUN_PLACEHOLDER, self.run_dir)):
            self.check(command)

    def check(self, argv: list[str]) -> None:
        program = program_name(argv[0])
        if any("<" in arg and ">" in arg for arg in argv):
            pytest.fail(f"{shlex.join(argv)}: a placeholder this test does not know")
        if program in WRAPPERS:
            wrapped = [i for i, arg in enumerate(argv) if i and arg in PROGRAMS | SYSTEM_TOOLS]
            assert wrapped, f"{shlex.join(argv)}: no command this test knows after {program}"
            return self.check(argv[wrapped[0] :])
        if program in SYSTEM_TOOLS:
            return None
        checks = {"python": self.python, "pip": self.pip, "make": self.make, "bash": self.bash,
                  "tensorboard": self.tensorboard, "wandb": self.wandb, "ray": self.ray}  # fmt: skip
        if program not in checks:
            pytest.fail(f"{shlex.join(argv)}: {program} is a program this test does not know how to check")
        return checks[program](argv[1:])

    def python(self, args: list[str]) -> None:
        if args[:2] == ["-m", "venv"]:
            return None
        if args[:2] == ["-m", "pytest"]:
            return self.exist(a for a in args[2:] if not a.startswith("-"))
        script = os.path.normpath(args[0])
        if script == "ddpg.py":
            return check_ddpg(args[1:])
        if script == "population.py":  # its own options, then ddpg.py's for each seed
            try:
                own, rest = population.parser().parse_known_args(args[1:])
            except SystemExit as e:  # status 0: --help was shown
                assert e.code == 0, f"python {shlex.join(args)}: refused (exit status {e.code})"
                return None
            assert own.seeds or own.resume, f"python {shlex.join(args)}: no --seeds or --resume"
            return check_ddpg([*rest, *(["--seed", own.seeds[0]] if own.seeds else [])])
        name = os.path.splitext(os.path.basename(script))[0]
        if os.path.dirname(script) == "benchmarks" and name in BENCHMARK_SCRIPTS:
            return self.benchmark(name, args[1:])
        pytest.fail(f"python {shlex.join(args)}: not a command this test knows")

    def benchmark(self, name: str, args: list[str]) -> None:
        self.monkeypatch.setattr(sys, "argv", [f"benchmarks/{name}.py", *args])
        script = importlib.import_module(name)
        try:
            if name == "sweep":  # its parse_args refuses what its parser cannot (--jobs with --ray, ...)
                options = script.parse_args()
                for env_id in options.envs:  # every run's command, as the sweep starts it
                    check_ddpg(["--env-id", env_id, "--seed", str(options.seeds[0]), *options.options_all])
                return None
            options = parse_only(script.main)
        except SystemExit as e:
            pytest.fail(f"benchmarks/{name}.py {shlex.join(args)}: refused (exit status {e.code})")
        if hasattr(options, "extra"):  # the script runs `python ddpg.py [--seed S]` with the options after --
            check_ddpg([*(["--seed", str(options.seeds[0])] if hasattr(options, "seeds") else []), *options.extra])
        return None

    def pip(self, args: list[str]) -> None:
        torch = f"torch=={pinned('torch')}"  # another build of the pinned torch (CPU, CUDA)
        if args[0] == "uninstall":
            assert args[1:] == ["-y", "torch"], f"pip {shlex.join(args)}: only `pip uninstall -y torch` is known"
        elif "-r" not in args:
            assert args[:2] == ["install", torch] and (len(args) == 2 or args[2] == "--index-url" and len(args) == 4), (
                f"pip {shlex.join(args)}: only `pip install -r FILE` and `pip install {torch} [--index-url URL]`"
            )
        else:
            assert args[0] == "install", f"pip {shlex.join(args)}: only `pip install -r FILE` is known"
            self.exist(args[i + 1] for i, arg in enumerate(args) if arg == "-r")

    def make(self, args: list[str]) -> None:
        result = subprocess.run(["make", "-s", "-n", *args], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, f"make {shlex.join(args)}: {result.stderr}"
        assert result.stdout.strip(), f"make {shlex.join(args)} runs no command"  # a .PHONY name without a rule
        for line in result.stdout.splitlines():  # the recipe's commands
            self.check_line(line)

    def bash(self, args: list[str]) -> None:
        self.exist(args[:1])
        result = subprocess.run(["bash", "-n", args[0]], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr

    def tensorboard(self, args: list[str]) -> None:
        from tensorboard import program

        try:
            program.TensorBoard().configure(argv=["tensorboard", *args])
        except SystemExit as e:
            pytest.fail(f"tensorboard {shlex.join(args)}: refused (exit status {e.code})")

    def wandb(self, args: list[str]) -> None:
        pytest.importorskip("wandb")
        from wandb.cli.cli import cli

        self.click(cli, args)

    def ray(self, args: list[str]) -> None:
        pytest.importorskip("ray")
        from ray.scripts.scripts import cli

        self.click(cli, args)

    def click(self, group, args: list[str]) -> None:
        """Parse a click program's subcommand and its options, without running it. A glob stands for files an
        earlier command made: one that matches it is made (in an empty directory), and the shell's expansion."""
        self.monkeypatch.chdir(self.tmp_path)
        for pattern in (a for a in args if "*" in a):
            os.makedirs(pattern.replace("*", "x"), exist_ok=True)
        args = [path for a in args for path in (sorted(glob.glob(a)) if "*" in a else [a])]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # click 8.2's protected_args, read as click does
            context = group.make_context(group.name or "cli", list(args))
            name, command, rest = group.resolve_command(context, [*context.protected_args, *context.args])
        command.make_context(name, rest, parent=context)

    def exist(self, paths) -> None:
        for path in paths:
            assert os.path.exists(os.path.join(ROOT, path)), f"{path}: no such file in the repository"


def pinned(package: str) -> str:
    """The version requirements.txt pins for `package`."""
    versions = re.findall(rf"^{package}==(\S+)$", open(os.path.join(ROOT, "requirements.txt")).read(), re.M)
    assert len(versions) == 1, f"requirements.txt pins no single version of {package}"
    return versions[0]


def check_ddpg(args: list[str]) -> None:
    """What ddpg.py checks before any work: its parser (exit status 2 on a bad option), then check_args and
    check_env. Whether this machine has a W&B login or a C++ compiler belongs to the machine, not to the command."""
    try:
        parsed = tyro.cli(ddpg.Args, args=args)
    except SystemExit as e:  # status 0: --help was shown
        assert e.code == 0, f"python ddpg.py {shlex.join(args)}: refused (exit status {e.code})"
        return
    has_compiler = (shutil.which("g++") or shutil.which("clang++")) is not None
    machine = dict(track=False, compile=parsed.compile and has_compiler)
    try:
        ddpg.check_args(dataclasses.replace(parsed, **machine))
        ddpg.check_env(parsed.env_id)
    except ddpg.UsageError as e:
        pytest.fail(f"python ddpg.py {shlex.join(args)}: {e}")


class Parsed(Exception):
    """Raised by a parser's parse_args once it has parsed: the script goes no further."""


def parse_only(main) -> argparse.Namespace:
    """The namespace a script's main parses from sys.argv with its own argparse parser; nothing else of it runs."""
    real = argparse.ArgumentParser.parse_args

    def parse_and_stop(parser, args=None, namespace=None):
        raise Parsed(real(parser, args, namespace))

    argparse.ArgumentParser.parse_args = parse_and_stop
    try:
        main()
    except Parsed as parsed:
        return parsed.args[0]
    finally:
        argparse.ArgumentParser.parse_args = real
    pytest.fail(f"{main.__module__}.main did not parse its arguments")


# ---------------------------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("line", [line for _, line in COMMANDS], ids=[f"{w} {line[:50]}" for w, line in COMMANDS])
def test_readme_command_works(line, run_dir, monkeypatch, tmp_path):
    for variant in variants(line):
        Checker(run_dir, monkeypatch, tmp_path).check_line(variant)


@pytest.mark.parametrize("page, block", BASH_BLOCKS, ids=[f"{p} {b.split(chr(10))[0][:50]}" for p, b in BASH_BLOCKS])
def test_each_bash_block_is_valid_bash(page, block):
    block = block.replace(RUN_PLACEHOLDER, "runs/RUN")  # a placeholder is read as the directory it stands for
    result = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_commands_found_include_the_set_up():  # else the extraction above misses commands
    found = "\n".join(line for _, line in COMMANDS)
    for expected in ("pip install -r requirements.txt", "python ddpg.py --env-id Pendulum-v1", "-m pytest -q tests",
                     "python benchmarks/sweep.py --envs", "make test"):  # fmt: skip
        assert expected in found, expected


@pytest.mark.parametrize("page", PAGES)
def test_every_fenced_block_with_commands_is_marked_bash(page):  # else its commands go unchecked
    for block in re.finditer(r"^```(\w*)\n(.*?)^```", TEXT[page], re.S | re.M):
        if block.group(1) not in ("bash", "python"):
            for line in block.group(2).splitlines():
                words = [w for w in line.split() if not re.fullmatch(r"\w+=\S*", w)]  # VAR=value dropped
                assert not words or program_name(words[0]) not in PROGRAMS, f"in a ```{block.group(1)} block: {line}"


@pytest.mark.parametrize(
    "page, block", PYTHON_BLOCKS, ids=[f"{p} {b.split(chr(10))[0][:40]}" for p, b in PYTHON_BLOCKS]
)
def test_each_python_block_runs(page, block, run_dir, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # where the README says to run it: `import ddpg` finds the file
    exec(compile(block.replace(RUN_PLACEHOLDER, run_dir), page, "exec"), {"__name__": "__main__"})


def anchors(page: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation but - dropped, spaces as -, repeats -1."""
    found = set()
    for heading in re.findall(r"^#+ (.*)$", prose(TEXT[page]), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(next(f"{slug}-{n}" if n else slug for n in range(100) if (f"{slug}-{n}" if n else slug) not in found))
    return found


@pytest.mark.parametrize("page", PAGES)
def test_every_link_leads_to_a_file_and_heading_that_exist(page):
    for target in LINK.findall(prose(TEXT[page])):
        if re.match(r"\w+://", target):
            continue
        path, _, anchor = target.partition("#")
        linked = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        assert os.path.exists(os.path.join(ROOT, linked)), f"{page}: {target}: no such file"
        if anchor:
            assert anchor in anchors(linked), f"{page}: {target}: no such heading in {linked}"


def test_the_readme_is_short_and_links_every_page():
    assert TEXT["README.md"].count("\n") <= README_MAX_LINES
    linked = {os.path.normpath(target.partition("#")[0]) for target in LINK.findall(TEXT["README.md"])}
    assert set(PAGES[1:]) <= linked, set(PAGES[1:]) - linked


def phony_targets() -> list[str]:
    makefile = open(os.path.join(ROOT, "Makefile")).read()
    return re.search(r"^\.PHONY:(.*)$", makefile, re.M).group(1).split()


def test_a_bare_make_lists_every_target_and_runs_nothing_else():
    result = subprocess.run(["make", "-s"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0]: " ".join(line.split()[1:]) for line in result.stdout.splitlines()}
    assert list(listed) == phony_targets() and all(listed.values())  # each with what it does
    assert subprocess.run(["make", "-n"], cwd=ROOT, capture_output=True, text=True).stdout.count("\n") == 1


def test_make_clean_removes_what_runs_leave_and_keeps_runs_gitkeep(tmp_path):
    shutil.copy(os.path.join(ROOT, "Makefile"), tmp_path)
    for path in ("runs/.gitkeep", "runs/Pendulum-v1__ddpg__1__1/model.pt", "runs/reports/sweep.md",
                 "wandb/offline-run-1/run-1.wandb", "benchmarks/results/sweep.md"):  # fmt: skip
        os.makedirs(tmp_path / os.path.dirname(path), exist_ok=True)
        (tmp_path / path).write_text("")
    subprocess.run(["make", "-s", "clean"], cwd=tmp_path, check=True)
    assert os.listdir(tmp_path / "runs") == [".gitkeep"] and not (tmp_path / "wandb").exists()
    assert (tmp_path / "benchmarks" / "results" / "sweep.md").exists()  # the committed figures stay
