"""Rich renderings of store rows for the terminal."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table


def terminal_console() -> Console:
    # Piped output (CI logs, `| less`) gets a table-friendly width instead of rich's 80.
    return Console(width=None if sys.stdout.isatty() else 120)


def _pct(rate: float | None) -> str:
    return "—" if rate is None else f"{100 * rate:.0f}%"


def skills_table(rows, include_unattempted: bool = False) -> Table:
    table = Table(title="skills", header_style="bold")
    for col, justify in [("skill", "left"), ("category", "left"), ("status", "left"),
                         ("tries", "right"), ("success", "right"), ("slow", "right"),
                         ("fast", "right"), ("steps", "right"), ("last used", "left")]:
        table.add_column(col, justify=justify, no_wrap=True)
    for r in rows:
        if not r.attempts and not include_unattempted:
            continue
        table.add_row(
            r.name, r.category, r.status, str(r.attempts), _pct(r.success_rate),
            _pct(r.slow_success_rate), _pct(r.fast_success_rate),
            "—" if r.mean_steps is None else f"{r.mean_steps:.0f}",
            r.last_used_at.strftime("%m-%d %H:%M") if r.last_used_at else "—")
    if not table.row_count:
        table.caption = "no skill attempted yet: run `peam run` or `peam demo`"
    return table


def jobs_table(rows) -> Table:
    table = Table(title="consolidation jobs", header_style="bold")
    for col in ("job", "game", "target", "status", "attempts", "worker", "expert", "created",
                "reason / error"):
        table.add_column(col, no_wrap=col != "reason / error")
    for j in rows:
        table.add_row(str(j.id), j.game, j.target, j.status, str(j.attempts), j.worker or "—",
                      f"#{j.expert_id}" if j.expert_id else "—",
                      j.created_at.strftime("%m-%d %H:%M:%S"), j.error or j.reason)
    if not table.row_count:
        table.caption = "no job yet: `peam consolidate --skill S` queues one"
    return table


def runs_table(rows) -> Table:
    table = Table(title="runs", header_style="bold")
    for col in ("run", "task", "memory", "status", "won", "steps", "started", "owner"):
        table.add_column(col, no_wrap=col in ("run", "status", "won", "steps"))
    for r in rows:
        table.add_row(str(r.id), f"{r.env}: {r.task}", r.memory_mode, r.status,
                      f"{r.successes}/{r.episodes}", str(r.steps),
                      r.started_at.strftime("%m-%d %H:%M"), r.owner or "—")
    if not table.row_count:
        table.caption = "no run yet: `peam run` plays one"
    return table
