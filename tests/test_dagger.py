"""DAgger: the slow path shadows every fast-path step and its action is recorded as the label;
training data then holds the fast path's own states, labelled by the teacher."""

import numpy as np

from agent.loop.arbiter import Arbiter
from agent.loop.runner import Runner
from consolidation.dataset import SegmentDataset
from envs import make_env
from envs.tasks import resolve_task
from memory import columns as C
from memory.policy import SubgoalTokenizer
from memory.protocol import Measured
from memory.store import Store


class Idle:
    """A fast path the gate passed on gather that only stands still."""

    version = ("gather", 1)

    version = 1

    def reset(self, seed, world=None):
        pass

    def covers(self, category, level="action"):
        return level == "action" and category == "gather"

    def confidence(self, name, level="action"):
        return Measured(1.0, 1)

    def act(self, obs, skill):
        return "noop"

    def done(self):
        return False

    def propose(self, context, category):
        return None


def _played(tmp_path):
    env = make_env("crafter")
    store = Store.open(f"sqlite:///{tmp_path}/peam.db")
    store.sync_skills(env.catalog)
    run_id = store.start_run(env="crafter", task="t", planner="symbolic", memory_mode="peam", config={})
    runner = Runner(env, recorder=store, run_id=run_id, arbiter=Arbiter(Idle()), shadow=True)
    result = runner.run_episode(resolve_task("collect_wood", env.catalog), seed=0)
    return env, store, result


def test_fast_steps_carry_the_slow_paths_action_and_slow_steps_do_not(tmp_path):
    env, store, result = _played(tmp_path)
    assert result.paths[:2] == ["fast", "slow"] and result.success  # idle, handed over, corrected
    (fast,) = store.segments(path="fast")
    steps = store.load_steps(fast.id)
    assert len(steps[C.TEACHER]) == fast.steps == len(steps[C.ACTION]) > 0
    noop = env.action_names.index("noop")
    assert set(steps[C.ACTION].tolist()) == {noop}  # what the fast path did
    assert set(steps[C.TEACHER].tolist()) != {noop}  # what the slow path would have done: walk, look
    assert all(C.TEACHER not in store.load_steps(s.id) for s in store.segments(path="slow"))
    store.close()


def test_without_shadowing_a_run_records_no_teacher(tmp_path):
    env = make_env("crafter")
    store = Store.open(f"sqlite:///{tmp_path}/peam.db")
    store.sync_skills(env.catalog)
    run_id = store.start_run(env="crafter", task="t", planner="symbolic", memory_mode="peam", config={})
    Runner(env, recorder=store, run_id=run_id, arbiter=Arbiter(Idle())).run_episode(
        resolve_task("collect_wood", env.catalog), seed=0)
    (fast,) = store.segments(path="fast")
    assert C.TEACHER not in store.load_steps(fast.id)
    store.close()


def test_the_dataset_takes_fast_steps_only_when_asked_and_labels_them_with_the_teacher(tmp_path):
    env, store, _ = _played(tmp_path)
    tok = SubgoalTokenizer(list(env.catalog.names), 4)
    plain = SegmentDataset(store, tok, game="crafter")
    dagger = SegmentDataset(store, tok, game="crafter", teacher=True)
    (fast,) = store.segments(path="fast")
    teacher = store.load_steps(fast.id)[C.TEACHER]
    assert plain.relabelled == 0 and dagger.relabelled == fast.steps
    assert len(dagger) == len(plain) + fast.steps
    k = dagger.segment_ids.index(fast.id)
    rows = (dagger.segment == k).nonzero().flatten()
    assert np.array_equal(dagger.action[rows].numpy(), teacher.astype(np.int64))
    assert dagger.done[rows].sum() == 0  # the fast path failed: no step completed the subgoal
    store.close()
