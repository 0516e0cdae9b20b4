"""docs/cli.md names every command once, with a synopsis that lists exactly the flags (and
choices) of the command's own argument parser, so the reference cannot drift from the code."""

from __future__ import annotations

import argparse
import configparser
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
CLI_MD = ROOT / "docs" / "cli.md"
# A flag starts a word: "-c", "--no-tta"; not the "-stage" of "two-stage".
FLAG = re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")


def _commands() -> dict[str, str]:
    """Console script name -> ``module:function`` from setup.cfg."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    commands = {}
    for line in cfg["options.entry_points"]["console_scripts"].strip().splitlines():
        name, target = line.split("=")
        commands[name.strip()] = target.strip()
    return commands


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def _parser(target: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser a command's ``main`` builds, caught when it starts parsing."""

    def catch(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", catch)
    module, function = target.split(":")
    with pytest.raises(_Parsed) as caught:
        getattr(importlib.import_module(module), function)([])
    return caught.value.parser


def _synopses(text: str) -> dict[str, list[str]]:
    """Command -> every synopsis of it: ``## `cmd ...` `` headings and table rows."""
    found: dict[str, list[str]] = {}
    pattern = r"^(?:## |\| )`(autojoint_\w+)((?: [^`]*)?)`"
    for m in re.finditer(pattern, text, flags=re.MULTILINE):
        found.setdefault(m.group(1), []).append(m.group(2))
    return found


SYNOPSES = _synopses(CLI_MD.read_text(encoding="utf-8"))
# Optional to argparse, but required by the command's own check after parsing (autojoint_plan
# needs -d unless --explain reads an existing plan, and -w unless --verify).
REQUIRED_AFTER_PARSING = {("autojoint_plan", "-d"), ("autojoint_plan", "-w")}


def _in_brackets(synopsis: str, position: int) -> bool:
    return synopsis[:position].count("[") > synopsis[:position].count("]")


@pytest.mark.parametrize("command", sorted(_commands()))
def test_each_command_has_one_synopsis(command: str) -> None:
    assert len(SYNOPSES.get(command, [])) == 1, (command, SYNOPSES.get(command))


@pytest.mark.parametrize(("command", "target"), sorted(_commands().items()))
def test_synopsis_lists_the_parsers_flags_and_choices(
    command: str, target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    synopsis = SYNOPSES[command][0]
    monkeypatch.delenv("AUTOJOINT_WORK", raising=False)  # else -w is optional
    parser = _parser(target, monkeypatch)
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    documented = set(FLAG.findall(synopsis))
    known = {s for a in options for s in a.option_strings}
    assert documented <= known, f"{command}: not flags of the parser: {documented - known}"
    for action in options:
        named = [s for s in action.option_strings if s in documented]
        assert named, f"{command}: {'/'.join(action.option_strings)} missing from docs/cli.md"
        value = re.search(
            r"(?<![\w-])" + re.escape(named[0]) + r"(?![\w-])(?: \[?([\w.:|-]+))?", synopsis
        )
        assert value is not None
        required = action.required or (command, action.option_strings[0]) in REQUIRED_AFTER_PARSING
        optional_shown = _in_brackets(synopsis, value.start())
        assert optional_shown != required, f"{command}: {named[0]} required = {required}"
        if action.choices is not None and value.group(1) and "|" in value.group(1):
            assert set(value.group(1).split("|")) == set(action.choices), (command, named[0])


def test_prediction_md_synopsis_matches_cli_md() -> None:
    text = (ROOT / "docs" / "prediction.md").read_text(encoding="utf-8")
    block = re.search(r"^    autojoint_predict(.*?)\n\n", text, flags=re.MULTILINE | re.DOTALL)
    assert block is not None
    assert set(FLAG.findall(block.group(1))) == set(FLAG.findall(SYNOPSES["autojoint_predict"][0]))
