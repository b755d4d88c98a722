"""The self-trigger, run in process between episodes: score every skill, queue a job for each
one whose trigger fires, and run the queue (`peam run --consolidate auto`)."""

from __future__ import annotations

from pathlib import Path

from agent.services.decision_cost import fast_decision_s, plan_proposal_s


def auto_consolidate(store, env, models_dir: str | Path, fast, console=None, device: str = "cpu",
                     pipeline=None) -> list:
    """Queue and run the jobs whose trigger fires; the jobs' final rows. `pipeline(job, beat)`
    defaults to the real one (train, evaluate, promote). Costs are measured online: a job's cost
    is the median of the jobs run so far (before the first, see `_estimate_job_cost`); the fast
    path's cost per use is its measured decision time × the mean slow-path steps per use."""
    from consolidation.scoring import measured_job_cost_s

    job_cost = measured_job_cost_s(store, env.name) or _estimate_job_cost(store, env)
    fired = _queue_action_jobs(store, env, fast, job_cost, console)
    # Which subgoal next: a plan job pays when the planner's seconds it would save exceed it.
    plan_cost = measured_job_cost_s(store, env.name, "plan") or job_cost
    fired += _queue_plan_jobs(store, env, plan_cost, console)
    if not fired:
        return []
    from agent.services.evaluation import run_job
    from consolidation.worker import Worker

    pipeline = pipeline or (lambda job, beat: run_job(store, job, beat, device=device, models_dir=models_dir))
    worker = Worker(store, pipeline, lease_s=600, name="in-process")
    done = []
    while (job := worker.run_once()) is not None:
        done.append(job)
    return done


def _queue_action_jobs(store, env, fast, job_cost: float, console) -> list:
    from consolidation.queue import enqueue
    from consolidation.scoring import pending_triggers, refresh_worthiness

    steps = [r.mean_steps for r in store.skill_table(env.name) if r.mean_steps]
    fast_cost = fast_decision_s(fast, env) * (sum(steps) / len(steps) if steps else 1.0)
    refresh_worthiness(store, env.name, job_cost_s=job_cost, fast_cost_estimate_s=fast_cost)
    fired = pending_triggers(store, env.name, job_cost_s=job_cost, fast_cost_estimate_s=fast_cost)
    for trig in fired:
        enqueue(store, game=env.name, category=trig.category, reason=trig.decision.reason)
        if console is not None:
            console.print(f"  trigger: {trig.skill} ({trig.category}): {trig.decision.reason}")
    return list(fired)


def _queue_plan_jobs(store, env, plan_cost: float, console) -> list:
    from consolidation.queue import enqueue
    from consolidation.scoring import pending_plan_triggers

    fired = pending_plan_triggers(store, env.name, job_cost_s=plan_cost,
                                  proposal_cost_s=plan_proposal_s(env.name))
    for trig in fired:
        enqueue(store, game=env.name, category=trig.category, reason=trig.decision.reason, kind="plan")
        if console is not None:
            console.print(f"  trigger: plans of {trig.category} tasks: {trig.decision.reason}")
    return list(fired)


def _estimate_job_cost(store, env) -> float:
    """Before any job ran: the seconds the slow path has spent so far, a bound on what the job
    will have to learn from (documented bootstrap; replaced by measurements after one job)."""
    return sum(s.wall_s for s in store.segments(path="slow", game=env.name)) or 1.0
