"""The README stays a short front page (<= 250 lines, the two quick-start commands, links that resolve) and the
docs site builds strictly (mkdocs: every page in the nav, no broken link)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_readme_is_short_and_opens_with_the_quick_start():
    assert len(README.splitlines()) <= 250
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", quick, re.DOTALL)
    assert commands == [
        'pip install . && lite-moderation score --prompt "How do I pick a lock?" --response "I can\'t help with that."',
        "pip install '.[test]' && python -m pytest -q",
    ]
    assert "English-first" in README and "non-commercial" in README and "CC BY-NC" in README


def test_readme_links_to_local_files_resolve():
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if "://" not in target:
            assert (ROOT / target).exists(), target


def test_the_docs_site_builds_strictly(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "site" / "index.html").is_file() and (tmp_path / "site" / "training" / "index.html").is_file()


def test_the_cli_page_names_every_command_and_option():
    """docs/cli.md's reference names each command and each of its long options (a user's round found `explain`,
    `bench`, `download` and a dozen `train` options documented nowhere)."""
    import click

    from lite_moderation.cli import main

    page = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    for name, command in main.commands.items():
        assert f"| `{name}` |" in page, name
        for param in command.params:
            if isinstance(param, click.Option):
                for option in param.opts + param.secondary_opts:
                    assert not option.startswith("--") or option == "--help" or f"`{option}`" in page, (name, option)
