"""What the verbs print: rich tables, a progress bar and a live status line on a terminal; plain,
scriptable lines otherwise (no colours, no bars: one record per line, fields separated by tabs),
or JSON with ``--json``.

Results go to stdout, everything else (progress, status, notes, errors) to stderr, so
``id=$(mlcommons models upload ... | tail -1)`` reads the id alone.
"""
from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any, TextIO


def when(ms: Any) -> str:
    """An epoch-millisecond time as ISO 8601 UTC (as the server stores them); '' when absent."""
    if not isinstance(ms, (int, float)) or isinstance(ms, bool):
        return ""
    try:
        moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return str(ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def cell(value: Any) -> str:
    """One field as text: lists joined by commas, objects as compact JSON, None as ''."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(cell(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _flat(text: str) -> str:
    """A plain cell never breaks its line or its columns."""
    return " ".join(text.replace("\t", " ").splitlines())


class Output:
    """``out``/``err``: rich consoles for a terminal, or None for plain text on ``stdout``/``stderr``.
    ``json_mode``: results as JSON (on stdout), whatever the streams are."""

    def __init__(self, *, json_mode: bool = False, out=None, err=None,
                 stdout: TextIO | None = None, stderr: TextIO | None = None):
        self.json_mode = json_mode
        self.out = out
        self.err = err
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr

    @classmethod
    def for_streams(cls, json_mode: bool = False) -> "Output":
        """Rich where the stream is a terminal (results stay plain JSON under ``--json``)."""
        out = err = None
        if sys.stdout.isatty() and not json_mode:
            from rich.console import Console

            out = Console(highlight=False)
        if sys.stderr.isatty():
            from rich.console import Console

            err = Console(stderr=True, highlight=False)
        return cls(json_mode=json_mode, out=out, err=err)

    # --- results (stdout) ------------------------------------------------------------------

    def line(self, text: str) -> None:
        """One result line, as is (an id, a JSON vector)."""
        print(text, file=self.stdout if self.out is None else self.out.file, flush=True)

    def json(self, value: Any) -> None:
        print(json.dumps(value, ensure_ascii=False), file=self.stdout if self.out is None else self.out.file,
              flush=True)

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], records: Any) -> None:
        """Rows under ``columns``: a rich table, or one tab-separated line per row (no header);
        ``records`` is what ``--json`` prints instead."""
        if self.json_mode:
            self.json(records)
            return
        if self.out is None:
            for row in rows:
                self.line("\t".join(_flat(cell(v)) for v in row))
            return
        from rich.table import Table

        table = Table(title=title, title_justify="left", header_style="bold")
        for name in columns:
            table.add_column(name, overflow="fold")
        for row in rows:
            table.add_row(*(cell(v) for v in row))
        if not rows:
            table.caption = "none"
        self.out.print(table)

    def document(self, title: str, doc: dict) -> None:
        """One record: compact JSON on one line, or a field/value table on a terminal."""
        if self.json_mode or self.out is None:
            self.json(doc)
            return
        from rich.table import Table

        table = Table(title=title, title_justify="left", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        for key, value in doc.items():
            shown = when(value) if key.endswith("_time") and isinstance(value, int) else cell(value)
            table.add_row(key, shown)
        self.out.print(table)

    # --- everything else (stderr) ------------------------------------------------------------

    def note(self, text: str) -> None:
        if self.err is not None:
            self.err.print(text, markup=False)
        else:
            print(text, file=self.stderr, flush=True)

    def error(self, message: str) -> None:
        if self.err is not None:
            self.err.print(f"[bold red]error:[/] {_escape(message)}")
        else:
            print(f"error: {message}", file=self.stderr, flush=True)

    @contextlib.contextmanager
    def progress(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """A progress bar over ``total`` bytes on a terminal; nothing otherwise. Yields ``advance(n)``."""
        if self.err is None:
            yield lambda n: None
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                      TimeRemainingColumn(), console=self.err, transient=False) as bar:
            task = bar.add_task(_escape(description), total=total)
            yield lambda n: bar.advance(task, n)

    @contextlib.contextmanager
    def status(self, text: str) -> Iterator[Callable[[str], None]]:
        """A live status line on a terminal; otherwise each new text once, as a line on stderr.
        Yields ``update(text)``."""
        if self.err is None:
            last = [text]
            self.note(text)

            def update_plain(new: str) -> None:
                if new != last[0]:
                    last[0] = new
                    self.note(new)

            yield update_plain
            return
        with self.err.status(_escape(text)) as live:
            yield lambda new: live.update(_escape(new))


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
