"""MkDocs hook: the report's figures become part of the site.

The report page embeds ``figures/<name>.svg``; those files live in ``report/figures/`` (written by
``python -m bench report``), not under ``docs/``. Copying them in at build time, instead of
committing copies, keeps one source of each figure, and because they enter as documentation files
MkDocs checks every embed: a figure the page shows but the report did not draw fails the strict
build.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

#: where ``python -m bench report`` writes its figures, relative to mkdocs.yml
FIGURES = Path("report") / "figures"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add every SVG of the report as ``figures/<name>.svg`` of the site."""
    root = Path(config.config_file_path).parent
    for figure in sorted((root / FIGURES).glob("*.svg")):
        files.append(File.generated(config, f"figures/{figure.name}", abs_src_path=str(figure)))
    return files
