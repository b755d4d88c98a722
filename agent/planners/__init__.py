"""The planners the loop asks for its next subgoals: symbolic (default) and LLM (transformers
or an OpenAI-compatible server) with their prompts, and a simulated remote LLM for benchmarks."""
