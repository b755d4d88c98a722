"""One name per batch key, shared by the store, the runner and the trainer (RLlib `Columns`)."""

VIEW = "view"  # (T, W, H) int16: the agent-visible local view, ids of Env.cell_names
INVENTORY = "inventory"  # (T, n_items) int16: items and vitals, in the catalog's item order
FACING = "facing"  # (T, 2) int8: the player sprite's direction
ACTION = "action"  # (T,) int16: the action taken after seeing that step's observation
REWARD = "reward"  # (T,) float32
SKILL = "skill"  # the subgoal's skill name
CATEGORY = "category"
PATH = "path"  # "slow" (planner + deliberate executor) or "fast" (policy + expert)
OUTCOME = "outcome"  # "success", "failure", "timeout", "interrupted"

STEP_KEYS = (VIEW, INVENTORY, FACING, ACTION, REWARD)
PATHS = ("slow", "fast")
OUTCOMES = ("success", "failure", "timeout", "interrupted")
