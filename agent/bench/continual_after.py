"""The agent after the continual protocol (`agent/bench/continual.py`): the protocol's tasks
played again and open-ended Crafter scored, with the memory arbitrated as a run would use it
rather than forced, on seeds no stage played. `mode` is the protocol's memory mode: its game,
store and fast path."""

from __future__ import annotations

SCORE_SEED = 90_000  # open-ended episodes after the protocol: seeds no stage played
REPLAY_SEED = 80_000  # the protocol's tasks after the last stage: seeds no stage played


def arbitrated_runner(mode):
    """The agent after the protocol: its memory as the fast path, arbitrated (not forced), with
    a clean live record."""
    from agent.loop.arbiter import Arbiter
    from agent.loop.runner import Runner

    return Runner(mode.env, arbiter=Arbiter.from_store(mode.fast(), mode.store, mode.env.name))


def replay_tasks(mode, skills: list[str], episodes: int) -> dict:
    """Every skill of the protocol as a task again after the last stage, on fresh seeds, as the
    agent would run it: how many of its steps the memory takes, and how often the task succeeds."""
    from envs.tasks import resolve_task

    runner = arbitrated_runner(mode)
    steps = fast = 0
    success = {}
    for j, skill in enumerate(skills):
        task = resolve_task(skill, mode.env.catalog)
        results = [runner.run_episode(task, REPLAY_SEED + 100 * j + k) for k in range(episodes)]
        steps += sum(r.steps for r in results)
        fast += sum(r.fast_steps for r in results)
        success[skill] = sum(r.success for r in results) / episodes
    return {"episodes": episodes, "fast_share": fast / max(steps, 1), "success": success}


def final_score(mode, episodes: int, max_steps: int) -> dict | None:
    """The agent after the protocol, with its memory as the fast path (arbitrated, not
    forced), on open-ended episodes: the Crafter score and the fast path's share of steps."""
    if episodes < 1:
        return None
    from envs.crafter import crafter_score, game_data
    from envs.tasks import OPEN_ENDED, resolve_task

    runner = arbitrated_runner(mode)
    task = resolve_task(OPEN_ENDED, mode.env.catalog, max_steps)
    results = [runner.run_episode(task, SCORE_SEED + k) for k in range(episodes)]
    rates = [100 * sum(a in r.unlocked for r in results) / len(results) for a in game_data()["achievements"]]
    steps = sum(r.steps for r in results)
    return {"crafter_score": crafter_score(rates), "episodes": episodes, "max_steps": max_steps,
            "mean_steps": steps / episodes, "fast_share": sum(r.fast_steps for r in results) / max(steps, 1),
            "died": sum(r.died for r in results)}
