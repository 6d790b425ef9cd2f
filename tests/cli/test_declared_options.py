"""What is derived from the parameter declarations: ``nbtools monitor``'s policy options and the
README's stage table."""

from __future__ import annotations

import re
from pathlib import Path

import click
from click.testing import CliRunner

from nbtools.cli import cli
from nbtools.cli._declared import DECLARATIONS
from nbtools.ops.monitoring.check import MonitorPolicy


def test_every_policy_setting_is_an_option_with_its_declared_help_and_range() -> None:
    options = {p.name: p for p in cli.commands["monitor"].params}

    for name, parameter in MonitorPolicy.SCHEMA.items():
        option = options[name]
        assert isinstance(option, click.Option) and option.default is None, name
        assert option.opts == ["--" + name.replace("_", "-")]
        assert parameter.help[1:] in (option.help or ""), name
    assert "an int in the range [1, 1000]" in (options["drift_windows"].help or "")


def test_a_setting_the_notebook_refuses_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """The notebook and pipeline.yaml refuse drift_windows above 1,000; so does the option."""
    result = CliRunner().invoke(
        cli,
        ["monitor", "--project", str(tmp_path), "--current", "new.csv", "--drift-windows", "5000"],
        catch_exceptions=False,
    )

    assert result.exit_code == 2
    assert (
        "The 'drift_windows' parameter of stage 'monitor' must be an int in the range "
        "[1, 1000]. Got 5000 instead." in result.output
    )
    assert list(tmp_path.iterdir()) == []


def test_the_readme_stage_table_names_only_declared_parameters() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    declared = {
        notebook.split("_", 1)[1].removesuffix(".ipynb"): {
            name for cls in classes for name in cls.SCHEMA
        }
        for notebook, classes in DECLARATIONS.items()
    }
    rows = re.findall(r"^\| (\w+) \| .* \| ((?:`\w+`(?:, )?)+) \|$", readme, flags=re.M)
    assert {stage for stage, _ in rows} == set(declared)
    for stage, names in rows:
        assert set(re.findall(r"`(\w+)`", names)) <= declared[stage], stage
