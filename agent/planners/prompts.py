"""What an LLM planner is told, and how its answer is read back.

Pure functions: the prompt is built from a `PlanContext` (agent-visible state only) and the
skill catalog; the answer is parsed into catalog skill names or rejected with a message that
is shown to the model on its retry.
"""

from __future__ import annotations

import json
from typing import Any

from agent.planners.planner import PlanContext
from envs.catalog import Skill, SkillCatalog

SYSTEM = (
    "You are the planner of an agent playing {game}. Break the task into an ordered list of "
    "subgoals; each subgoal must be the exact name of one skill from the catalog. A skill can "
    "only succeed once the items it requires are held and the cells it needs are nearby. "
    'Answer with one JSON object and nothing else: {{"subgoals": ["skill", ...], '
    '"rationale": "one sentence"}}.'
)


class PlanFormatError(ValueError):
    """The model's answer is not a usable plan; the message is what the model is told."""


def describe_skill(skill: Skill) -> str:
    parts = [f"{skill.name} ({skill.category})"]
    if skill.requires:
        parts.append("requires " + _items(skill.requires))
    if skill.nearby:
        parts.append("near " + ", ".join(skill.nearby))
    if skill.target:
        parts.append("acts on " + ", ".join(skill.target))
    if skill.gives:
        parts.append("gives " + _items(skill.gives))
    if skill.places:
        parts.append("places " + skill.places)
    if skill.after:
        parts.append("after " + ", ".join(skill.after))
    return "; ".join(parts)


def build_messages(ctx: PlanContext, catalog: SkillCatalog) -> list[dict[str, str]]:
    """Chat messages (system, user) asking for the plan of `ctx`."""
    task = ctx.task
    goal = ("unlock as many of these as you can: " if task.open_ended else "unlock: ")
    locked = [g for g in task.goals if g not in ctx.achieved]
    lines = [
        f"Task: {task.name} ({goal}{', '.join(locked) or 'nothing left'}).",
        f"Inventory: {_items(ctx.inventory) or 'empty'}.",
        f"In sight: {_names(ctx.in_sight)}.",
        f"Remembered nearby: {_names(ctx.known)}.",
        f"Achieved this episode: {_names(ctx.achieved)}.",
    ]
    if ctx.failures:
        lines.append(f"Failed attempts this episode: {_items(ctx.failures)}.")
    lines.append("Skills:")
    lines += [f"- {describe_skill(s)}" for s in catalog]
    lines.append('Reply with JSON: {"subgoals": [...], "rationale": "..."}')
    return [
        {"role": "system", "content": SYSTEM.format(game=catalog.game)},
        {"role": "user", "content": "\n".join(lines)},
    ]


def retry_messages(reply: str, error: str) -> list[dict[str, str]]:
    """The turn that shows the model its rejected answer and why."""
    return [
        {"role": "assistant", "content": reply},
        {"role": "user", "content": f"That answer is not usable: {error}. Reply again with "
                                    'only JSON: {"subgoals": [...], "rationale": "..."}'},
    ]


def extract_json(text: str) -> Any:
    """The first JSON object or array in `text` (models wrap JSON in prose or ``` fences)."""
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                value, _end = decoder.raw_decode(text, i)
            except json.JSONDecodeError:
                continue
            if isinstance(value, (dict, list)):
                return value
    raise PlanFormatError("no JSON object or list found in the answer")


def parse_plan(text: str, catalog: SkillCatalog, *, allow_empty: bool = False
               ) -> tuple[list[str], str]:
    """(skill names, rationale) from a model's answer, or `PlanFormatError`."""
    value = extract_json(text)
    rationale = ""
    if isinstance(value, dict):
        if "subgoals" not in value:
            raise PlanFormatError('the JSON object has no "subgoals" key')
        rationale = str(value.get("rationale", ""))[:500]
        value = value["subgoals"]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PlanFormatError('"subgoals" must be a list of skill names (strings)')
    names = [v.strip() for v in value]
    unknown = [n for n in names if n not in catalog]
    if unknown:
        raise PlanFormatError(f"unknown skills {unknown}; use only names from the Skills list")
    if not names and not allow_empty:
        raise PlanFormatError("the plan is empty but the task is not done")
    return names, rationale


def _items(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} x{v}" for k, v in counts.items() if v)


def _names(names: frozenset[str]) -> str:
    return ", ".join(sorted(names)) or "nothing"
