"""The slow path deciding on a game the caller steps (agent/loop/slow_decision.py): its decisions
alone play a task to the end, and what it is shown is what the runner would show."""

from __future__ import annotations

from agent.loop.slow_decision import SlowDecider
from envs import make_env
from envs.tasks import resolve_task


def test_its_subgoals_and_actions_alone_make_a_wood_pickaxe():
    env = make_env("crafter")
    task = resolve_task("make_wood_pickaxe", env.catalog)
    slow_path = SlowDecider(env, task)
    slow_path.start(*env.reset(seed=5))
    while not slow_path.over and slow_path.steps < task.max_steps:
        skill = slow_path.next_skill()
        if skill is None:  # the task needs nothing more
            break
        action = slow_path.act(skill)
        slow_path.observe(env.step(env.action_names.index(action)), action)
    assert all(slow_path.achieved(goal) > 0 for goal in task.goals)
    assert slow_path.next_skill() is None


def test_a_failed_attempt_reaches_the_planners_context_and_a_new_episode_forgets_it():
    env = make_env("crafter")
    slow_path = SlowDecider(env, resolve_task("make_wood_pickaxe", env.catalog))
    slow_path.start(*env.reset(seed=1))
    slow_path.fail("collect_wood")
    assert slow_path.failures("collect_wood") == 1
    assert slow_path.context().failures == {"collect_wood": 1}
    slow_path.start(*env.reset(seed=2))
    assert slow_path.context().failures == {} and slow_path.steps == 0
