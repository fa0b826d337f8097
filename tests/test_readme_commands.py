"""Every command in the README's bash blocks still works as written: the script or module it
runs exists, its `--help` prints, its argument parser accepts the command line, and each
`--set` names a config field of the right type. A renamed script, flag, preset or config
field breaks this test, not a reader's first try.

The arguments are parsed by the script's own `main`, stopped right after argparse returns,
so nothing is trained, read or written."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import re
import shlex
import sys
from pathlib import Path
from unittest import mock

import pytest

from utils.config_parse import build_config

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SEPARATORS = {"&&", "||", ";", "|"}


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def commands(block: str) -> list[list[str]]:
    """The block's commands as argv lists: continuation lines joined, comments dropped,
    `a && b` split in two, leading VAR=value assignments removed."""
    found = []
    for line in block.replace("\\\n", " ").splitlines():
        words, current = shlex.split(line, comments=True), []
        for word in words + [";"]:
            if word not in SEPARATORS:
                current.append(word)
                continue
            while current and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", current[0]):
                current.pop(0)
            if current:
                found.append(current)
            current = []
    return found


README_COMMANDS = [argv for block in bash_blocks(README.read_text()) for argv in commands(block)]


class Parsed(Exception):
    """Raised in place of argparse's return value, to stop `main` before it does any work."""

    def __init__(self, namespace: argparse.Namespace):
        super().__init__("parsed")
        self.namespace = namespace


def load(target: str, is_module: bool):
    """The Python module that `python target` (a file) or `python -m target` runs."""
    if is_module:
        spec = importlib.util.find_spec(target)
        assert spec is not None, f"python -m {target}: no such module"
        if spec.submodule_search_locations is not None:  # a package runs its __main__
            return importlib.import_module(f"{target}.__main__")
        return importlib.import_module(target)
    path = ROOT / target
    assert path.is_file(), f"{target}: no such file in the repository"
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def parse(module, argv: list[str]) -> argparse.Namespace:
    original = argparse.ArgumentParser.parse_args

    def stop_after_parsing(self, args=None, namespace=None):
        raise Parsed(original(self, args, namespace))

    with mock.patch.object(argparse.ArgumentParser, "parse_args", stop_after_parsing):
        try:
            module.main(argv)
        except Parsed as done:
            return done.namespace
    raise AssertionError(f"{module.__name__}.main returned without parsing its arguments")


def python_target(argv: list[str]) -> tuple[str, bool, list[str]]:
    """(script path or module name, whether it is a module, its arguments) of a command."""
    program, rest = argv[0], argv[1:]
    if program == "torchrun":  # torchrun's own options come before the script
        index = next(i for i, word in enumerate(rest) if word.endswith(".py"))
        return rest[index], False, rest[index + 1:]
    assert program in ("python", "python3"), f"{shlex.join(argv)}: teach this test the command {program!r}"
    if rest[0] == "-m":
        return rest[1], True, rest[2:]
    return rest[0], False, rest[1:]


def is_project(target: str, is_module: bool) -> bool:
    if not is_module:
        return True
    top = target.split(".")[0]
    return (ROOT / top).is_dir() or (ROOT / f"{top}.py").is_file()


@pytest.mark.parametrize("argv", README_COMMANDS, ids=shlex.join)
def test_readme_command_parses(argv):
    if argv[0] == "pip":
        for flag, value in zip(argv, argv[1:]):
            if flag in ("-r", "--requirement"):
                assert (ROOT / value).is_file(), f"{shlex.join(argv)}: no {value}"
        return
    target, is_module, args = python_target(argv)
    if not is_project(target, is_module):  # a tool such as pytest: it must be installed
        assert importlib.util.find_spec(target) is not None, f"{target} is not installed"
        return
    namespace = parse(load(target, is_module), args)
    overrides = getattr(namespace, "overrides", None)
    if overrides:  # a --config file may not exist here: check the fields on the preset
        preset = getattr(namespace, "preset", None) or namespace.default_preset
        build_config(preset, overrides)


@pytest.mark.parametrize("target, is_module", sorted({
    python_target(argv)[:2] for argv in README_COMMANDS
    if argv[0] != "pip" and is_project(*python_target(argv)[:2])}), ids=str)
def test_readme_script_prints_its_help(target, is_module):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
        load(target, is_module).main(["--help"])
    assert stop.value.code == 0 and "usage:" in out.getvalue()


def test_commands_are_found_in_the_readme():
    """The parser of this test sees the README's commands (a changed fence would hide them)."""
    scripts = {python_target(argv)[0] for argv in README_COMMANDS if argv[0] != "pip"}
    assert {"show.py", "train.py", "eval.py", "real_train.py"} <= scripts
    assert commands("A=1 python x.py --set 'a.b=(1, 2)' \\\n  --y && pip install z  # note\n") == [
        ["python", "x.py", "--set", "a.b=(1, 2)", "--y"], ["pip", "install", "z"]]


def test_a_renamed_flag_or_field_is_caught(monkeypatch):
    """The checks above can fail: an unknown flag stops argparse, an unknown field the config."""
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        parse(load("train.py", False), ["--no-such-flag"])
    with pytest.raises(ValueError, match="no field"):
        build_config("demo", ["train.no_such_field=1"])
