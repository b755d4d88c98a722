"""One name per batch key, shared by the store, the runner and the trainer (RLlib `Columns`)."""

VIEW = "view"  # (T, W, H) int16: the agent-visible local view, ids of Env.cell_names
INVENTORY = "inventory"  # (T, n_items) int16: items and vitals, in the catalog's item order
MAP = "map"  # (T, M, M) int16: the agent's own remembered cells around it, 0 = never seen
FACING = "facing"  # (T, 2) int8: the player sprite's direction
ACTION = "action"  # (T,) int16: the action taken after seeing that step's observation
# (T,) int16, fast-path steps only: the action the slow path would have taken in that very state
# (it shadows the fast path). DAgger's label: the states the policy itself reaches, which the
# slow path's own segments never show it, labelled by the teacher.
TEACHER = "teacher"
REWARD = "reward"  # (T,) float32
SKILL = "skill"  # the subgoal's skill name
CATEGORY = "category"
# A training batch's keys besides the step columns above (consolidation/dataset.py)
SUBGOAL = "subgoal"  # (N, words) long: the subgoal's skill name as the policy tokenizer's word ids
DONE = "done"  # (N,) float: 1 on the step that completed the subgoal
PATH = "path"  # "slow" (planner + deliberate executor) or "fast" (policy + expert)
OUTCOME = "outcome"  # "success", "failure", "timeout", "interrupted"

STEP_KEYS = (VIEW, MAP, INVENTORY, FACING, ACTION, REWARD, TEACHER)
MAP_RADIUS = 8  # MAP is (2·8+1)² = 17×17 cells: a short walk in every direction
PATHS = ("slow", "fast")
OUTCOMES = ("success", "failure", "timeout", "interrupted")
# Who chose a segment's subgoal: the slow planner ("planner"), the rest of its last plan walked
# in order ("cursor"), the plan-level memory ("memory"), a survival reflex ("reflex"), or the
# symbolic plan standing in for an unusable planner answer ("fallback").
DECIDERS = ("planner", "cursor", "memory", "reflex", "fallback")
KINDS = ("action", "plan")  # an expert's (a job's) level: how to act on a subgoal, or which subgoal next
OPEN = "open"  # the plan category of the open-ended task (it has no skill category of its own)
