"""What the dashboard's JSON API returns and accepts: pydantic models, so /openapi.json
describes every field."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

NAME_PATTERN = r"^[A-Za-z0-9_.:\-]{1,128}$"  # skill, category and game names


class SkillOut(BaseModel):
    game: str
    name: str
    category: str
    status: str
    attempts: int
    successes: int
    success_rate: float | None = Field(description="None until attempted")
    slow_attempts: int
    slow_success_rate: float | None
    fast_attempts: int
    fast_success_rate: float | None
    mean_steps: float | None
    last_used_at: datetime | None
    worthiness: float | None
    cost_saving: float | None = Field(None, description="uses x seconds saved per use")
    stability: float | None = Field(None, description="consistency and number of successful "
                                                      "demonstrations")
    redundancy: float | None = Field(None, description="how well an existing expert already "
                                                       "covers the skill")
    interference: float | None = Field(None, description="how much training would disturb the "
                                                         "skills sharing the expert")


class EvaluationOut(BaseModel):
    """One point of a skill's forgetting curve: its success re-measured under a registry
    version (after a promotion)."""

    id: int
    expert_id: int | None
    skill: str
    episodes: int
    successes: int
    success_rate: float
    registry_version: int
    created_at: datetime


class SegmentOut(BaseModel):
    id: int
    episode_id: int
    index: int
    skill: str
    category: str
    path: str
    outcome: str
    start_step: int
    steps: int
    wall_s: float
    planner_calls: int
    corrects_segment_id: int | None
    created_at: datetime
    decided_by: str = Field("planner", description="who chose the subgoal: planner, cursor, memory, reflex, fallback")
    planner_s: float = Field(0.0, description="the planner's seconds for the decision that chose it")


class EpisodeOut(BaseModel):
    id: int
    run_id: int
    env: str
    task: str
    seed: int
    status: str
    steps: int
    reward: float
    error: str | None
    planner_calls: int
    planner_s: float = Field(0.0, description="seconds the slow planner took in this episode")
    planner_tokens_in: int = 0
    planner_tokens_out: int = 0
    memory_decisions: int = Field(0, description="subgoals the plan-level memory chose instead of the planner")
    wall_s: float = 0.0
    fast_steps: int
    slow_steps: int
    fast_share: float | None = Field(description="fast_steps / (fast_steps + slow_steps)")
    started_at: datetime
    finished_at: datetime | None


class SuccessPoint(BaseModel):
    attempt: int = Field(description="1-based attempt number on this path")
    path: str
    success_rate: float = Field(description="running success rate after this attempt")
    at: datetime


class SkillDetailOut(BaseModel):
    skill: SkillOut
    success_over_time: list[SuccessPoint]
    recent_segments: list[SegmentOut]
    recent_episodes: list[EpisodeOut]
    evaluations: list[EvaluationOut] = Field(description="forgetting curve, by registry version")
    correction_pairs: int = Field(description="slow-path segments that corrected a fast-path "
                                              "failure of this skill")


class ExpertOut(BaseModel):
    id: int
    kind: str = Field("action", description="action: how to act on a subgoal; plan: which subgoal next")
    game: str
    category: str
    skill: str | None
    routing: str
    rank: int
    version: int
    params: int
    sha256: str
    status: str
    metrics: dict | None
    created_at: datetime
    promoted_at: datetime | None
    skill_success: dict[str, float] = Field(default_factory=dict,
                                            description="held-out fast-path success per skill")
    propose_above: dict[str, float | None] = Field(
        default_factory=dict, description="plan experts: per task, the probability of its own under which "
                                          "the planner is asked (null: the planner answers the task)")
    job_id: int | None = Field(None, description="the consolidation job that produced it")
    job_status: str | None = None
    candidate_success: float | None = Field(None, description="the job's held-out mean success "
                                                              "with this expert")
    current_success: float | None = Field(None, description="... with the expert it replaced")


class JobOut(BaseModel):
    id: int
    kind: str = "action"
    game: str
    skill: str | None
    category: str | None
    reason: str
    status: str
    worker: str | None
    attempts: int
    error: str | None
    expert_id: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    wait_s: float | None = Field(description="queued until started")
    duration_s: float | None = Field(description="started until finished")


class RunOut(BaseModel):
    id: int
    env: str
    task: str
    planner: str
    memory_mode: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    episodes: int
    successes: int
    fast_steps: int
    slow_steps: int
    fast_share: float | None


class JobRequest(BaseModel):
    """Queue a consolidation of one skill or of one category (exactly one of the two)."""

    game: str = Field("crafter", pattern=NAME_PATTERN)
    skill: str | None = Field(None, pattern=NAME_PATTERN)
    category: str | None = Field(None, pattern=NAME_PATTERN)

    @model_validator(mode="after")
    def one_target(self) -> JobRequest:
        if (self.skill is None) == (self.category is None):
            raise ValueError("give exactly one of skill or category")
        return self


SkillSort = Literal["name", "game", "category", "status", "attempts", "success_rate",
                    "slow_success_rate", "fast_success_rate", "worthiness", "cost_saving",
                    "stability", "redundancy", "interference", "last_used_at"]
Order = Literal["asc", "desc"]
