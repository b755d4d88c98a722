"""A simulated remote LLM: a loopback OpenAI-compatible chat server that answers, after a
delay, the plan the symbolic planner would make.

It stands in for a real model behind `--planner openai:URL` wherever none can be reached (a
fresh machine, CI, the savings benchmark): the agent pays what it would pay a remote model in
seconds and calls, and gets correct plans, so what the memory saves is measured without a
model's mistakes in the way. It reads the context back out of the prompt the agent sent
(agent/planners/prompts.py `build_messages`): only what the planner is shown. Token counts are words
(whitespace-split), labelled as such; every answer says it is simulated.

    with SimulatedLLM(delay_s=1.0) as llm:
        planner = make_planner(f"openai:{llm.url}", catalog, options=LLMOptions(model=SIMULATED_MODEL))
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agent.planners.planner import PlanContext, SymbolicPlanner
from envs import make_env
from envs.tasks import resolve_task

SIMULATED_MODEL = "simulated-remote-llm"


def context_of(prompt: str, catalog) -> PlanContext:
    """The PlanContext a `build_messages` user prompt was made from (as far as it shows it)."""
    fields = {}
    for line in prompt.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            fields[key.strip()] = value.strip().rstrip(".")
    task_name = fields.get("Task", "").split(" (")[0]
    task = resolve_task(task_name, catalog)

    def names(key: str) -> frozenset[str]:
        value = fields.get(key, "nothing")
        return frozenset() if value in ("nothing", "") else frozenset(v.strip() for v in value.split(","))

    def counts(key: str) -> dict[str, int]:
        out = {}
        for part in fields.get(key, "").split(","):
            match = re.fullmatch(r"\s*(\S+) x(\d+)\s*", part)
            if match:
                out[match.group(1)] = int(match.group(2))
        return out

    return PlanContext(task=task, inventory=counts("Inventory"), achieved=names("Achieved this episode"),
                       known=names("Remembered nearby"), in_sight=names("In sight"),
                       failures=counts("Failed attempts this episode"))


def send_json(handler, status: int, data: bytes) -> None:
    """Answer an http.server request with a JSON body; a client that gave up is no error."""
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    except OSError:
        pass


class SimulatedLLM:
    """The server; a context manager. `url` is its OpenAI base URL (…/v1)."""

    def __init__(self, game: str = "crafter", delay_s: float = 1.0, host: str = "127.0.0.1", port: int = 0):
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s}")
        self.catalog = make_env(game).catalog
        self.planner = SymbolicPlanner(self.catalog)
        self.delay_s = delay_s
        self.calls = 0
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def answer(self, messages: list[dict]) -> str:
        """The plan for the first user turn's context, as the JSON the agent asks for."""
        prompt = next(m["content"] for m in messages if m.get("role") == "user")
        ctx = context_of(prompt, self.catalog)
        goal = self.planner.next_goal(ctx)
        subgoals = [] if goal is None else [s.skill for s in self.planner.chain(goal, ctx)]
        return json.dumps({"subgoals": subgoals, "rationale": "simulated: the symbolic planner's chain"})

    def _handler(self):
        sim = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                try:
                    length = int(self.headers.get("Content-Length", 0))
                    body = json.loads(self.rfile.read(length))
                    text = sim.answer(body["messages"])
                except (ValueError, KeyError, TypeError, StopIteration) as e:
                    self._send(400, {"error": f"simulated LLM: bad request ({type(e).__name__})"})
                    return
                time.sleep(sim.delay_s)
                with sim._lock:
                    sim.calls += 1
                prompt_words = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
                self._send(200, {"model": SIMULATED_MODEL, "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": prompt_words, "completion_tokens": len(text.split()),
                              "total_tokens": prompt_words + len(text.split()), "unit": "words (simulated)"}})

            def _send(self, status: int, payload: dict) -> None:
                send_json(self, status, json.dumps(payload).encode())

            def log_message(self, *args):
                pass

        return Handler

    def start(self) -> SimulatedLLM:
        self._thread = threading.Thread(target=self.server.serve_forever, name="simulated-llm", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.server.server_close()

    def __enter__(self) -> SimulatedLLM:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def random_causal_lm(path, corpus: list[str], *, dims: dict | None = None, vocab_size: int = 400,
                     stops: bool = True, seed: int = 0):
    """Write a random-weight Llama and a byte-level BPE tokenizer trained on `corpus` to
    `path`, loadable as any local model (`hf:PATH`): the `hf:` planner's real loading and
    generation code, on a machine that can download no model. `dims`: LlamaConfig sizes
    (default: 2 tiny layers); `stops`: whether it has an end-of-sequence token (without one,
    every call generates `max_new_tokens`)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>")
    fast.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n"
                          "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
    torch.manual_seed(seed)
    sizes = dict(dims or dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=2))
    sizes["vocab_size"] = max(sizes.get("vocab_size", 0), len(fast))
    config = LlamaConfig(**sizes, max_position_embeddings=8192, pad_token_id=0, bos_token_id=1,
                         eos_token_id=1 if stops else None)
    LlamaForCausalLM(config).save_pretrained(path)
    fast.save_pretrained(path)
    return path
