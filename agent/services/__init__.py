"""What runs the loop and keeps its memory current: the run session, the Ray pool, the demo,
the memory modes, the self-trigger with its cost and evaluation measures, and the CLI's exit
codes and terminal views."""
