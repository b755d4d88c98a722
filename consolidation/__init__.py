"""Turns experience into experts: worthiness, the self-trigger, pair mining, the trainer, the job
queue and the gated, atomic promotion."""
