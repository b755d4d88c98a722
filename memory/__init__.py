"""What the agent remembers: the SQL store, the expert registry, LoRA / MoE-LoRA layers and the
fast policy. Importing this package imports nothing heavy (no torch, no SQLAlchemy)."""
