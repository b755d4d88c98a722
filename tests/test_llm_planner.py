"""The LLM planners, on real code paths with nothing downloaded: a tiny random Llama and a
tokenizer trained here (hf:), and a real local HTTP server speaking chat-completions (openai:)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.planners.llm_planner import HFPlanner, LLMOptions, OpenAIPlanner, make_planner
from agent.planners.planner import PlanContext, SymbolicPlanner
from agent.planners.prompts import PlanFormatError, build_messages, extract_json, parse_plan
from agent.planners.sim_llm import send_json
from envs.crafter import crafter_catalog
from envs.errors import ConfigError, PeamError
from envs.tasks import resolve_task

VALID = '{"subgoals": ["collect_wood", "place_table", "make_wood_pickaxe"], "rationale": "tools"}'


@pytest.fixture(scope="module")
def catalog():
    return crafter_catalog()


@pytest.fixture
def ctx(catalog):
    inv = {"health": 9, "food": 9, "drink": 9, "energy": 9}
    return PlanContext(resolve_task("make_wood_pickaxe", catalog), inv,
                       in_sight=frozenset({"grass", "tree"}))


# -- parsing and validation -------------------------------------------------------------------

def test_parse_reads_the_json_object_inside_a_markdown_fence(catalog):
    names, why = parse_plan(f"Sure!\n```json\n{VALID}\n```\nGood luck.", catalog)
    assert names == ["collect_wood", "place_table", "make_wood_pickaxe"] and why == "tools"


def test_parse_accepts_a_bare_json_list(catalog):
    assert parse_plan('plan: ["collect_wood"]', catalog)[0] == ["collect_wood"]


def test_extract_json_skips_braces_that_are_not_json():
    assert extract_json('use {braces} then {"subgoals": []}') == {"subgoals": []}


@pytest.mark.parametrize("text, why", [
    ('{"subgoals": ["fly_to_moon"]}', "unknown skills"),
    ('{"plan": ["collect_wood"]}', "no \"subgoals\""),
    ('{"subgoals": "collect_wood"}', "list of skill names"),
    ('{"subgoals": []}', "empty"),
    ("collect wood please", "no JSON"),
])
def test_parse_rejects_unusable_answers_with_a_reason(catalog, text, why):
    with pytest.raises(PlanFormatError, match=why):
        parse_plan(text, catalog)


def test_prompt_shows_task_inventory_sight_memory_and_catalog(catalog):
    inv = {"wood": 2, "health": 9}
    ctx = PlanContext(resolve_task("make_wood_pickaxe", catalog), inv,
                      achieved=frozenset({"collect_wood"}), known=frozenset({"water"}),
                      in_sight=frozenset({"tree"}))
    user = build_messages(ctx, catalog)[1]["content"]
    for part in ("make_wood_pickaxe", "wood x2", "In sight: tree", "Remembered nearby: water",
                 "Achieved this episode: collect_wood", "make_wood_pickaxe (craft); requires wood x1; "
                 "near table; gives wood_pickaxe x1"):
        assert part in user


# -- make_planner -----------------------------------------------------------------------------

def test_make_planner_symbolic(catalog):
    assert isinstance(make_planner("symbolic", catalog), SymbolicPlanner)


@pytest.mark.parametrize("spec", ["gpt4", "hf:", "openai", "llama:/x"])
def test_make_planner_rejects_unknown_forms_in_one_line(catalog, spec):
    with pytest.raises(ConfigError) as e:
        make_planner(spec, catalog)
    assert "\n" not in str(e.value) and "hf:PATH" in str(e.value)


def test_missing_hf_model_is_a_one_line_peam_error(catalog, tmp_path):
    with pytest.raises(PeamError) as e:
        make_planner(f"hf:{tmp_path / 'nope'}", catalog)
    assert "\n" not in str(e.value) and "no hf planner model" in str(e.value)


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError):
        LLMOptions(top_p=0)


# -- hf: a tiny random Llama with a tokenizer trained here ------------------------------------

@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, catalog):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [VALID, *catalog.names, "subgoals rationale requires near gives inventory"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>")
    fast.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n"
                          "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=4096, pad_token_id=0, eos_token_id=1,
                         bos_token_id=1)
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(path)
    fast.save_pretrained(path)
    return path


@pytest.fixture
def hf_planner(tiny_model_dir, catalog):
    planner = make_planner(f"hf:{tiny_model_dir}", catalog,
                           options=LLMOptions(max_new_tokens=16, dtype="float32"))
    assert isinstance(planner, HFPlanner)
    return planner


def test_hf_random_model_garbage_is_retried_once_then_falls_back(hf_planner, ctx, caplog):
    plan = hf_planner.plan(ctx)
    assert plan.fallback and plan.calls == 2 and hf_planner.fallbacks == 1
    assert plan.tokens > 0 and plan.latency_s > 0
    assert plan.subgoals == SymbolicPlanner(hf_planner.catalog).plan(ctx).subgoals
    assert "fell back" in caplog.text


def test_hf_prompt_uses_the_tokenizer_chat_template(hf_planner, ctx):
    text = hf_planner.prompt_text(build_messages(ctx, hf_planner.catalog))
    assert text.startswith("<system>") and text.endswith("<assistant>")


def _answering(planner, answers):
    """Make the model's `generate` emit `answers` in turn (tokenized by the real tokenizer)."""
    import torch

    def generate(input_ids, **kwargs):
        ids = planner.tokenizer(answers.pop(0), return_tensors="pt")["input_ids"]
        return torch.cat([input_ids, ids], dim=1)

    planner.model.generate = generate


def test_hf_valid_answer_becomes_the_plan(hf_planner, ctx):
    _answering(hf_planner, [VALID])
    plan = hf_planner.plan(ctx)
    assert [s.skill for s in plan.subgoals] == ["collect_wood", "place_table", "make_wood_pickaxe"]
    assert not plan.fallback and plan.calls == 1 and plan.subgoals[0].reason == "tools"


def test_hf_invalid_then_valid_answer_succeeds_on_the_retry(hf_planner, ctx):
    _answering(hf_planner, ['{"subgoals": ["fly"]}', VALID])
    plan = hf_planner.plan(ctx)
    assert not plan.fallback and plan.calls == 2 and hf_planner.fallbacks == 0


def test_survival_stays_a_reflex_without_a_model_call(hf_planner, catalog):
    thirsty = PlanContext(resolve_task("make_wood_pickaxe", catalog),
                          {"health": 9, "food": 9, "drink": 1, "energy": 9})
    plan = hf_planner.plan(thirsty)
    assert plan.calls == 0 and plan.subgoals[0].skill == "collect_drink"


def test_done_task_needs_no_model_call(hf_planner, catalog):
    done = PlanContext(resolve_task("collect_wood", catalog), {"health": 9, "food": 9,
                       "drink": 9, "energy": 9}, achieved=frozenset({"collect_wood"}))
    assert hf_planner.plan(done).subgoals == [] and hf_planner.plan(done).calls == 0


# -- openai: a real local chat-completions server ---------------------------------------------

class ChatServer(ThreadingHTTPServer):
    """Answers each POST with the next scripted (status, body, delay_s); records requests."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script: list[tuple[int, str, float]] = []
        self.requests: list[dict] = []


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "body": body,
                                     "auth": self.headers.get("Authorization")})
        status, payload, delay = self.server.script.pop(0)
        time.sleep(delay)
        send_json(self, status, payload.encode())  # a client that gave up (timeout test) is no error

    def log_message(self, *args):
        pass


def completion(text: str, usage: bool = True) -> str:
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}
    if usage:
        body["usage"] = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    return json.dumps(body)


@pytest.fixture
def server():
    srv = ChatServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def openai_planner(server, catalog):
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    planner = make_planner(f"openai:{url}", catalog,
                           options=LLMOptions(model="tiny", api_key="k", timeout_s=0.5))
    assert isinstance(planner, OpenAIPlanner)
    yield planner
    planner.close()


def test_openai_valid_answer_becomes_the_plan(openai_planner, server, ctx):
    server.script = [(200, completion(f"```json\n{VALID}\n```"), 0)]
    plan = openai_planner.plan(ctx)
    assert [s.skill for s in plan.subgoals][-1] == "make_wood_pickaxe"
    assert not plan.fallback and plan.calls == 1 and plan.tokens == 120
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer k"
    assert req["body"]["model"] == "tiny" and req["body"]["messages"][0]["role"] == "system"


def test_openai_timeout_is_retried_then_falls_back(openai_planner, server, ctx):
    server.script = [(200, completion(VALID), 1.0), (200, completion(VALID), 1.0)]
    plan = openai_planner.plan(ctx)
    assert plan.fallback and plan.calls == 2 and openai_planner.fallbacks == 1


def test_openai_server_error_then_success_uses_the_answer(openai_planner, server, ctx):
    server.script = [(500, '{"error": "overloaded"}', 0), (200, completion(VALID, usage=False), 0)]
    plan = openai_planner.plan(ctx)
    assert not plan.fallback and plan.calls == 2 and plan.tokens == 0


def test_openai_malformed_body_falls_back(openai_planner, server, ctx):
    server.script = [(200, "not json {", 0), (200, '{"choices": []}', 0)]
    plan = openai_planner.plan(ctx)
    assert plan.fallback
    assert plan.subgoals == SymbolicPlanner(openai_planner.catalog).plan(ctx).subgoals


def test_openai_invalid_plan_is_retried_with_the_error_then_falls_back(openai_planner, server, ctx):
    bad = completion('{"subgoals": ["build_rocket"]}')
    server.script = [(200, bad, 0), (200, bad, 0)]
    plan = openai_planner.plan(ctx)
    assert plan.fallback and plan.calls == 2 and plan.tokens == 240
    retry = server.requests[1]["body"]["messages"]
    assert retry[-2]["role"] == "assistant" and "build_rocket" in retry[-1]["content"]


def test_openai_needs_a_model_name(catalog, monkeypatch):
    monkeypatch.delenv("PEAM_LLM_MODEL", raising=False)
    with pytest.raises(ConfigError, match="PEAM_LLM_MODEL"):
        make_planner("openai:http://127.0.0.1:9/v1", catalog)


def test_unloadable_hf_directory_is_a_one_line_peam_error(catalog, tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(PeamError) as e:
        make_planner(f"hf:{tmp_path}", catalog)
    assert "\n" not in str(e.value) and "cannot load" in str(e.value)
