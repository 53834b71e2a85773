"""Nothing a tool, a model, a plan or a server says reaches the terminal as a control sequence.

Step outputs, tool stderr, plan requests and descriptions may carry clear-screen, OSC 52
(clipboard write), OSC 0 (window title) or OSC 8 (hyperlink) sequences. Everything shown is
escaped (C0 and C1 controls but newline and tab become visible ``\\xNN``); ``--json`` keeps the
data exact, JSON-escaped.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console
from rich.text import Text
from support import Behaviour, Recorder, execute, plan, step

from code_evolver import events
from code_evolver.catalogue import rows
from code_evolver.cli import main_group
from code_evolver.cli.show import warnings
from code_evolver.cli.terminal import report_error, stderr_console
from code_evolver.display.live import LineProgress, LiveView
from code_evolver.display.plan_tree import plan_tree
from code_evolver.display.results import results_view
from code_evolver.display.safe import json_safe, terminal_safe
from code_evolver.display.tools_table import tools_table
from code_evolver.errors import PlanError
from code_evolver.organizer import organize
from code_evolver.tools.template import TemplateTool

HOSTILE = (
    "before\x1b[2J\x1b[H"  # clear the screen, cursor home
    "\x1b]52;c;ZXZpbA==\x07"  # write the clipboard
    "\x1b]0;pwned\x07"  # set the window title
    "\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\"  # a hidden hyperlink
    "\u202e\u2066\u200f"  # bidirectional override, isolate, mark: text shown reordered
    "\x9b31m\x90dcs\x9c\x7f\x00after"  # C1 CSI, DCS, ST, DEL, NUL
)
RAW_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def plain_console() -> Console:
    return Console(file=io.StringIO(), width=200, force_terminal=False, color_system=None)


def rendered(*renderables: object) -> str:
    console = plain_console()
    for renderable in renderables:
        console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined,no-any-return]


def assert_inert(text: str) -> None:
    assert RAW_CONTROL.search(text) is None, repr(RAW_CONTROL.findall(text))
    assert "before" in text
    assert "after" in text


def test_terminal_safe_keeps_newlines_and_tabs_and_makes_controls_visible() -> None:
    assert terminal_safe("a\tb\nc") == "a\tb\nc"
    assert terminal_safe("windows\r\nline") == "windows\nline"
    assert terminal_safe("\x1b[2J") == "\\x1b[2J"
    assert terminal_safe("\x9b\x7f\x00") == "\\x9b\\x7f\\x00"
    assert terminal_safe("héllo ✓ 日本") == "héllo ✓ 日本"
    assert terminal_safe("\u202ecod.exe") == "\\u202ecod.exe"  # shown, not obeyed
    assert terminal_safe("שלום עולם") == "שלום עולם"  # right-to-left text itself is text


def test_results_escape_outputs_and_errors() -> None:
    rec = Recorder()
    rec.behaviours["a"] = Behaviour(output=HOSTILE)
    rec.behaviours["b"] = Behaviour(output=HOSTILE)
    rec.behaviours["c"] = Behaviour(always_fail=True)
    result = execute(plan(step("a"), step("b", "a"), step("c")), {"work": rec.tool()})
    assert_inert(rendered(results_view(result)))
    assert_inert(rendered(results_view(result, markdown={"work"})))


def test_plan_tree_escapes_request_descriptions_and_warnings() -> None:
    organized = organize(
        plan(
            step("a", description=HOSTILE),
            step("b", input=f"{{a}} {HOSTILE}"),
            request=HOSTILE,
        )
    )
    assert_inert(rendered(plan_tree(organized)))


def test_live_view_and_line_progress_escape_descriptions_and_errors() -> None:
    organized = organize(plan(step("a", description=HOSTILE), step("b")))
    console = plain_console()
    view = LiveView(organized, console)
    view(events.StepFailed("b", 1, HOSTILE, "failed", 0.1))
    assert_inert(rendered(view))
    progress_console = plain_console()
    LineProgress(progress_console)(events.StepFailed("b", 1, HOSTILE, "failed", 0.1))
    assert_inert(progress_console.file.getvalue())  # type: ignore[attr-defined]


def test_tool_descriptions_warnings_and_errors_are_escaped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert_inert(rendered(tools_table(rows({"t": TemplateTool("t", description=HOSTILE)}))))
    console = plain_console()
    warnings(console, [HOSTILE])
    assert_inert(console.file.getvalue())  # type: ignore[attr-defined]
    report_error(PlanError([HOSTILE, HOSTILE]), as_json=False)
    assert_inert(capsys.readouterr().err)


def test_the_cli_console_escapes_whatever_a_renderable_forgot() -> None:
    console = stderr_console()
    console.file = io.StringIO()
    console.print(Text(HOSTILE))  # a raw Text: no escaping on the way in
    assert_inert(console.file.getvalue())
    assert "pwned" in console.file.getvalue()  # dropped controls, kept text


def test_json_keeps_the_data_exact_and_inert(tmp_path: Path) -> None:
    plan_file = tmp_path / "p.json"
    plan_file.write_text(
        json.dumps(
            {"request": HOSTILE, "steps": [{"step_id": "a", "tool": "combine", "input": HOSTILE}]}
        )
    )
    config = str(Path(__file__).resolve().parent.parent / "config.yaml")
    shown = CliRunner().invoke(main_group, ["run", str(plan_file), "--config", config])
    assert shown.exit_code == 0, shown.output
    assert_inert(shown.stdout)
    assert RAW_CONTROL.search(shown.stderr) is None
    as_json = CliRunner().invoke(main_group, ["run", str(plan_file), "--json", "--config", config])
    assert RAW_CONTROL.search(as_json.stdout) is None
    assert json.loads(as_json.stdout)["steps"]["a"]["output"] == HOSTILE
    assert json_safe('"\x9b"') == '"\\u009b"'
