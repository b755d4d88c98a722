"""The expert registry: one `experts` row per trained expert version, on the store's database.

A new expert is registered as a `candidate` with the sha256 of its tensors file and of the base
it was trained on; promotion (flipping the status) is a later, separate step. Versions count per
(game, category, skill). Paths are stored relative to the store's models directory
(`stored_path`) and resolved against it (`expert_dir`), so a store read from another working
directory, moved, or read by a runner on another node finds its experts (issue 19, item 9).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select

from envs.errors import PeamError
from memory.columns import KINDS
from memory.lora import ROUTINGS
from memory.tables import Expert, utcnow

# superseded: a candidate that a later training round of the same job replaced before the gate
STATUSES = ("candidate", "promoted", "retired", "rejected", "superseded")


@dataclass(frozen=True)
class ExpertRow:
    id: int
    kind: str  # action | plan (memory.columns.KINDS)
    game: str
    category: str
    skill: str | None
    routing: str
    rank: int
    version: int
    path: str
    sha256: str
    params: int
    status: str
    metrics: dict | None
    created_at: datetime
    promoted_at: datetime | None
    base_sha256: str | None = None  # the base it was trained on (None: registered before it was kept)


def stored_path(models_dir: str | Path, path: str | Path) -> str:
    """How an expert directory is registered: relative to `models_dir` when it lies inside it
    (POSIX separators), else absolute."""
    path, models = Path(path).absolute(), Path(models_dir).absolute()
    try:
        return path.relative_to(models).as_posix()
    except ValueError:
        return str(path)


def expert_dir(models_dir: str | Path, path: str | Path) -> Path:
    """Where a registered expert directory is now: an absolute path as it is; a relative one
    inside `models_dir`. Rows registered before paths were relative hold a path relative to
    the directory their job ran in (`peam-data/models/experts/build/job1`): it is found where
    it still is, else from its `experts/` (or `plan/experts/`) part inside `models_dir`."""
    path, models = Path(path), Path(models_dir)
    inside = models / path
    if path.is_absolute() or inside.exists():
        return inside  # `models / absolute` is the absolute path itself
    if path.exists():
        return path
    parts = path.parts
    if "experts" in parts:
        i = parts.index("experts")
        if i > 0 and parts[i - 1] == "plan":
            i -= 1
        if (models / Path(*parts[i:])).exists():
            return models / Path(*parts[i:])
    return inside


def _row(e: Expert) -> ExpertRow:
    return ExpertRow(**{name: getattr(e, name) for name in ExpertRow.__dataclass_fields__})


def register_expert(store, *, game: str, category: str, routing: str, rank: int, path: str,
                    sha256: str, params: int, metrics: dict | None = None,
                    status: str = "candidate", skill: str | None = None, kind: str = "action",
                    base_sha256: str | None = None) -> int:
    """Add one expert version; returns its id. Its version is one more than the last of the
    same (kind, game, category, skill). `path` as `stored_path` gives it; `base_sha256` the
    digest of the base weights it was trained on."""
    if kind not in KINDS:
        raise ValueError(f"expert kind {kind!r} not in {KINDS}")
    if routing not in ROUTINGS:
        raise ValueError(f"routing {routing!r} not in {ROUTINGS}")
    if status not in STATUSES:
        raise ValueError(f"expert status {status!r} not in {STATUSES}")
    if len(sha256) != 64 or (base_sha256 is not None and len(base_sha256) != 64):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}, base {base_sha256!r}")
    now = utcnow()
    with store.session() as s:
        same = (Expert.kind == kind, Expert.game == game, Expert.category == category,
                Expert.skill.is_(None) if skill is None else Expert.skill == skill)
        last = s.scalar(select(func.max(Expert.version)).where(*same)) or 0
        row = Expert(kind=kind, game=game, category=category, skill=skill, routing=routing, rank=int(rank),
                     version=last + 1, path=str(path), sha256=sha256, params=int(params),
                     status=status, metrics=metrics, created_at=now, base_sha256=base_sha256,
                     promoted_at=now if status == "promoted" else None)
        s.add(row)
        s.flush()
        return row.id


def experts(store, game: str | None = None, status: str | None = None,
            kind: str | None = None) -> list[ExpertRow]:
    """Every registered expert (optionally one game's, one status', one kind's), oldest first."""
    query = select(Expert).order_by(Expert.id)
    if kind is not None:
        query = query.where(Expert.kind == kind)
    if game is not None:
        query = query.where(Expert.game == game)
    if status is not None:
        query = query.where(Expert.status == status)
    with store.session() as s:
        return [_row(e) for e in s.scalars(query)]


def promoted(store, game: str, kind: str = "action") -> list[ExpertRow]:
    """The experts of one kind a game's fast path uses now."""
    return experts(store, game, status="promoted", kind=kind)


def retire(store, expert_ids) -> None:
    """Take experts out of use (their base was replaced: `peam train-base --replace`)."""
    with store.session() as s:
        for expert_id in expert_ids:
            s.get(Expert, expert_id).status = "retired"


def promote(store, expert_id: int) -> None:
    """Make `expert_id` the promoted expert of its (kind, game, category, skill); the one
    before it is retired, in the same transaction."""
    with store.session() as s:
        row = s.get(Expert, expert_id)
        if row is None:
            raise KeyError(f"no expert {expert_id}")
        for old in s.scalars(select(Expert).where(
                Expert.kind == row.kind, Expert.game == row.game, Expert.category == row.category,
                Expert.skill.is_(None) if row.skill is None else Expert.skill == row.skill,
                Expert.status == "promoted", Expert.id != row.id)):
            old.status = "retired"
        row.status, row.promoted_at = "promoted", utcnow()


@dataclass(frozen=True)
class ExpertRef:
    """Which expert file serves a category on the fast path, and what the gate measured."""

    category: str
    path: str
    expert_id: int | None = None
    skill_success: dict[str, float] | None = None  # held-out fast-path success per skill
    skill_attempts: dict[str, int] | None = None  # the fast-path attempts each rate stands on
    skill_steps: dict[str, int] | None = None  # the steps those attempts took in all
    skill_seconds: dict[str, float] | None = None  # and their wall seconds
    # A plan expert's names are tasks: its held-out proposals per task that led to a
    # successful subgoal (skill_success) and how many there were (skill_attempts).
    support: dict[str, list[str]] | None = None  # plan expert: per task, the subgoals it may propose
    # What loading for play checks (issue 19, items 4 and 5): the registered digest of the
    # expert's tensors file and of the base it was trained on (None: not checked).
    sha256: str | None = None
    base_sha256: str | None = None
    # Plan expert: per task, the probability of its own under which the planner is asked
    # (memory/protocol.py `Measured.sure`; null: none was enough, the planner answers the task).
    propose_above: dict[str, float | None] | None = None


def check_base(refs, digest: str, what: str = "base") -> None:
    """Refuse experts trained on another base than the one whose weights hash to `digest`
    (a replaced or altered base: issue 19, items 4 and 5); experts registered before bases
    were recorded (None) are not checked."""
    for ref in refs:
        if ref.base_sha256 is not None and ref.base_sha256 != digest:
            raise PeamError(f"expert #{ref.expert_id} ({ref.category}) was trained on another {what} "
                            f"(sha256 {ref.base_sha256[:12]}…) than the one in the models directory "
                            f"({digest[:12]}…): restore that {what}, or retire the expert and "
                            f"consolidate its category again")


def ref_of(row: ExpertRow) -> ExpertRef:
    metrics = row.metrics or {}
    return ExpertRef(row.category, row.path, row.id, metrics.get("skill_success"),
                     metrics.get("skill_attempts"), metrics.get("skill_steps"),
                     metrics.get("skill_seconds"), metrics.get("support"), row.sha256, row.base_sha256,
                     metrics.get("propose_above"))
