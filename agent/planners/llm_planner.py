"""LLM planners: a local `transformers` causal LM (`hf:PATH`) and any OpenAI-compatible
chat-completions server (`openai:URL` — vLLM, llama.cpp server, Ollama).

Both implement the `Planner` interface of `agent.planners.planner`. An answer that is not a plan of
catalog skills gets one retry with the error shown to the model; if it is still unusable, or
the model cannot be reached, the symbolic plan is used (`Plan.fallback=True`, counted in
`self.fallbacks`, logged on `peam.planner`). The agent never stops for want of a planner.

Survival stays a reflex: when `SymbolicPlanner.urgent` finds a vital below its level, the
symbolic answer is returned without asking the model. A language model adds nothing to
"drink when thirsty" and its latency (seconds on CPU) is what lets the agent die.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from agent.planners.planner import Plan, PlanContext, Planner, Subgoal, SymbolicPlanner
from agent.planners.prompts import PlanFormatError, build_messages, parse_plan, retry_messages
from envs.catalog import SkillCatalog
from envs.errors import ConfigError, PeamError

log = logging.getLogger("peam.planner")

PLANNER_FORMS = ("symbolic, hf:PATH_OR_MODEL_ID, openai:BASE_URL "
                 "(e.g. openai:http://localhost:8000/v1)")


@dataclass
class LLMOptions:
    model: str | None = None  # openai: model name (else env PEAM_LLM_MODEL)
    api_key: str | None = None  # openai: bearer key, else env OPENAI_API_KEY (local: none)
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 128
    device: str = "cpu"  # hf: torch device
    dtype: str = "auto"  # hf: auto, float32, float16, bfloat16
    timeout_s: float = 60.0  # openai: per request
    retries: int = 1  # re-asks after an unusable answer or a failed call

    def __post_init__(self):
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ConfigError("LLM options: temperature must be >= 0 and top_p in (0, 1]")
        if self.max_new_tokens < 1 or self.retries < 0 or self.timeout_s <= 0:
            raise ConfigError("LLM options: max_new_tokens >= 1, retries >= 0, timeout_s > 0")


class LLMCallError(PeamError):
    """The model could not be asked (timeout, server error, malformed response)."""


def make_planner(spec: str, catalog: SkillCatalog, *, options: LLMOptions | None = None) -> Planner:
    """The planner named by `spec`: `symbolic`, `hf:PATH` or `openai:URL`."""
    options = options or LLMOptions()
    kind, _, target = spec.partition(":")
    if spec == "symbolic":
        return SymbolicPlanner(catalog)
    if kind == "hf" and target:
        return HFPlanner(target, catalog, options)
    if kind == "openai" and target:
        return OpenAIPlanner(target, catalog, options)
    raise ConfigError(f"unknown planner {spec!r}: use one of {PLANNER_FORMS}")


class LLMPlanner:
    """The ask–validate–retry–fall back loop shared by every backend.

    A backend implements `complete(messages) -> (text, tokens_in, tokens_out)` and raises
    `LLMCallError` when the model cannot answer.
    """

    name = "llm"

    def __init__(self, catalog: SkillCatalog, options: LLMOptions):
        self.catalog = catalog
        self.options = options
        self.symbolic = SymbolicPlanner(catalog)
        self.fallbacks = 0

    def complete(self, messages: list[dict[str, str]]) -> tuple[str, int, int]:
        raise NotImplementedError

    def plan(self, ctx: PlanContext) -> Plan:
        urgent = self.symbolic.urgent(ctx)
        if urgent:  # survival reflex, see the module docstring
            return Plan([urgent])
        if self.symbolic.next_goal(ctx) is None:  # the task is done: nothing to ask
            return Plan([])
        start = time.perf_counter()
        messages = build_messages(ctx, self.catalog)
        calls = tokens_in = tokens_out = 0
        error = ""
        for _attempt in range(1 + self.options.retries):
            calls += 1
            try:
                text, used_in, used_out = self.complete(messages)
            except LLMCallError as e:
                error = str(e)
                log.warning("%s planner call failed: %s", self.name, error)
                continue
            tokens_in, tokens_out = tokens_in + used_in, tokens_out + used_out
            try:
                names, rationale = parse_plan(text, self.catalog)
            except PlanFormatError as e:
                error = str(e)
                log.info("%s planner answer rejected: %s", self.name, error)
                messages = messages + retry_messages(text, error)
                continue
            subgoals = [Subgoal(n, rationale) for n in names]
            return Plan(subgoals, calls=calls, tokens=tokens_in + tokens_out, tokens_in=tokens_in,
                        tokens_out=tokens_out, latency_s=time.perf_counter() - start)
        self.fallbacks += 1
        log.warning("%s planner fell back to the symbolic plan (%d so far): %s",
                    self.name, self.fallbacks, error)
        plan = self.symbolic.plan(ctx)
        plan.calls, plan.fallback = calls, True
        plan.tokens, plan.tokens_in, plan.tokens_out = tokens_in + tokens_out, tokens_in, tokens_out
        plan.latency_s = time.perf_counter() - start
        return plan


class HFPlanner(LLMPlanner):
    """A local `transformers` causal LM; never downloads (`local_files_only=True`)."""

    def __init__(self, path: str, catalog: SkillCatalog, options: LLMOptions):
        super().__init__(catalog, options)
        self.name = f"hf:{path}"
        self.tokenizer, self.model = _load_hf(path, options)

    def prompt_text(self, messages: list[dict[str, str]]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True)
        # A base model without a template: a plain transcript ending where the answer goes.
        turns = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n\n".join(turns) + "\n\nAssistant:"

    def complete(self, messages: list[dict[str, str]]) -> tuple[str, int, int]:
        return self.complete_batch([messages])[0]

    def complete_batch(self, batch: list[list[dict[str, str]]]) -> list[tuple[str, int, int]]:
        """One left-padded `generate` for several prompts (the Ray pool's planner actor batches
        concurrent runners' requests); each answer is `(text, tokens_in, tokens_out)` as
        `complete` gives it, and a batch of one is exactly `complete`."""
        import torch

        tok, opts = self.tokenizer, self.options
        tok.padding_side = "left"  # decoder-only models continue from the right end
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        enc = tok([self.prompt_text(m) for m in batch], return_tensors="pt", padding=True,
                  add_special_tokens=False).to(self.model.device)
        width = enc["input_ids"].shape[1]
        kwargs = dict(max_new_tokens=opts.max_new_tokens, do_sample=opts.temperature > 0,
                      pad_token_id=tok.pad_token_id)
        if opts.temperature > 0:
            kwargs.update(temperature=opts.temperature, top_p=opts.top_p)
        try:
            with torch.no_grad():
                out = self.model.generate(**enc, **kwargs)  # (batch, width + new tokens)
        except (RuntimeError, ValueError) as e:  # e.g. a prompt longer than the model's context
            reason = str(e).splitlines()[0] if str(e) else repr(e)
            raise LLMCallError(f"generation failed: {reason}") from None
        new = out[:, width:]  # (batch, new tokens)
        prompt_lens = enc["attention_mask"].sum(dim=1)  # (batch,)
        texts = tok.batch_decode(new, skip_special_tokens=True)
        return [(t, int(p), n) for t, p, n in zip(texts, prompt_lens, self._answer_lengths(new))]

    def _answer_lengths(self, new) -> list[int]:
        """Tokens each row generated: up to its first eos (generate pads a row that ended
        before the others)."""
        import torch

        eos = self.model.generation_config.eos_token_id
        eos = [] if eos is None else eos if isinstance(eos, list) else [eos]
        ended = torch.isin(new, torch.tensor(eos, dtype=new.dtype, device=new.device))  # (batch, new)
        lengths = torch.where(ended.any(dim=1), ended.int().argmax(dim=1) + 1, new.shape[1])  # (batch,)
        return [int(n) for n in lengths]


def _load_hf(path: str, options: LLMOptions):
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:  # pragma: no cover - torch and transformers are dependencies
        raise PeamError(f"the hf planner needs torch and transformers: {e}") from None
    dtype = "auto" if options.dtype == "auto" else getattr(torch, options.dtype, None)
    if dtype is None:
        raise ConfigError(f"unknown dtype {options.dtype!r}: "
                          "use auto, float32, float16 or bfloat16")
    if path.startswith((".", "/", "~")) and not os.path.isdir(os.path.expanduser(path)):
        raise PeamError(f"no hf planner model at {path!r}: give a directory holding a "
                        "transformers causal LM (config.json, weights, tokenizer)")
    try:
        path = os.path.expanduser(path)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
        model.to(options.device).eval()
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PeamError(f"cannot load the hf planner model {path!r} ({reason}); give a local "
                        "model directory or an id already in the Hugging Face cache") from None
    return tokenizer, model


class OpenAIPlanner(LLMPlanner):
    """Any server speaking OpenAI's `POST {base}/chat/completions`."""

    def __init__(self, base_url: str, catalog: SkillCatalog, options: LLMOptions):
        import httpx

        super().__init__(catalog, options)
        self.name = f"openai:{base_url}"
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = options.model or os.environ.get("PEAM_LLM_MODEL")
        if not self.model:
            raise ConfigError("the openai planner needs a model name: set PEAM_LLM_MODEL "
                              "(e.g. PEAM_LLM_MODEL=qwen2.5:7b) or pass --llm-model")
        key = options.api_key or os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(timeout=options.timeout_s, headers=headers)

    def complete(self, messages: list[dict[str, str]]) -> tuple[str, int, int]:
        import httpx

        opts = self.options
        body = {"model": self.model, "messages": messages, "temperature": opts.temperature,
                "top_p": opts.top_p, "max_tokens": opts.max_new_tokens}
        try:
            response = self.client.post(self.url, json=body)
        except httpx.TimeoutException:
            raise LLMCallError(f"{self.url} did not answer within {opts.timeout_s:g}s") from None
        except httpx.HTTPError as e:
            raise LLMCallError(f"cannot reach {self.url}: {e}") from None
        if response.status_code != 200:
            raise LLMCallError(f"{self.url} answered HTTP {response.status_code}: "
                               f"{response.text[:200]!r}")
        try:
            data = response.json()
            text = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise LLMCallError(f"{self.url} sent a malformed chat-completions body: "
                               f"{response.text[:200]!r}") from None
        if not isinstance(text, str):
            raise LLMCallError(f"{self.url} sent no text content")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        tokens_in, tokens_out = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
        if not tokens_in + tokens_out:  # a server that reports only the total: count it as prompt
            tokens_in = _count(usage.get("total_tokens"))
        return text, tokens_in, tokens_out

    def close(self) -> None:
        self.client.close()


def _count(value) -> int:
    """A token count a server reported, or 0 for none or nonsense."""
    try:
        return max(int(value or 0), 0)
    except (TypeError, ValueError):
        return 0
