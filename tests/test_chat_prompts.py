"""Chat prompts: a suite prompt or a question as a list of messages (TRL's conversational format),
checked with file:line errors, sent as chat by every provider (real HTTP through the real SDKs to the
emulator), recorded and replayed, reported, exported and given to reward functions as TRL would."""
from __future__ import annotations

import copy
import json
import warnings

import pytest
import yaml

from conftest import GSM8K_TEST, TEST_KEY
from rlhf_eval import SuiteError, Trace, load_suite, reward_function, run_suites, score_question
from rlhf_eval.export import suite_records
from rlhf_eval.html_report import prompt_html
from rlhf_eval.rewards import REWARDS
from rlhf_eval.report_model import Question as ReportQuestion
from rlhf_eval.suite import ModelConfig

DEAD = "http://127.0.0.1:9"
ROWS = [json.loads(line) for line in GSM8K_TEST.read_text(encoding="utf-8").splitlines()[:3]]
QUESTION = ROWS[0]["question"]
SYSTEM = "You are a careful math tutor."
FEW_SHOT = [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "A: 5"}]
CHAT = [{"role": "system", "content": SYSTEM}, *FEW_SHOT, {"role": "user", "content": QUESTION}]


def _write(tmp_path, doc, name="s.yaml"):
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


def _error(path) -> str:
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    return str(info.value)


# ----------------------------------------------------------------------------- loading and checks

def test_a_chat_template_renders_every_message_and_puts_the_system_instruction_first(tmp_path):
    suite = load_suite(_write(tmp_path, """\
suite: chat
model: {name: gemini-2.0-flash, system_instruction: Be brief.}
samples: 2
prompt:
  - {role: user, content: "What is 2 + 3?"}
  - {role: assistant, content: "A: 5"}
  - {role: user, content: "Q: {question} (braces {{stay}})"}
questions:
  - {id: a, question: "What is 3 + 4?", answer: "7"}
"""))
    assert suite.chat
    assert suite.render_prompt(suite.questions[0]) == [
        {"role": "system", "content": "Be brief."}, *FEW_SHOT,
        {"role": "user", "content": "Q: What is 3 + 4? (braces {stay})"}]


def test_a_text_prompt_still_renders_to_text(tmp_path):
    suite = load_suite(_write(tmp_path, {"suite": "t", "model": {"name": "gemini-2.0-flash"}, "samples": 1,
                                         "prompt": "Q: {question}", "questions": [
                                             {"id": "a", "question": "x?", "answer": "1"}]}))
    assert not suite.chat and suite.render_prompt(suite.questions[0]) == "Q: x?"


BASE = "suite: chat\nmodel: {name: gemini-2.0-flash}\nsamples: 2\n"
QUESTIONS = "questions:\n  - {id: a, question: 'What is 3 + 4?', answer: '7'}\n"


@pytest.mark.parametrize("prompt, line, message", [
    ("prompt: []\n", 4, "prompt: an empty list of messages; give at least the user's message"),
    ("prompt:\n  - {role: human, content: '{question}'}\n", 5,
     "prompt[0].role: unknown role 'human' (write 'user'); roles are system, user, assistant"),
    ("prompt:\n  - {role: usr, content: '{question}'}\n", 5,
     "prompt[0].role: unknown role 'usr' (did you mean 'user'?); roles are system, user, assistant"),
    ("prompt:\n  - {role: user, content: '{question}'}\n  - {role: assistant, content: '7'}\n", 6,
     "prompt[1]: the last message is 'assistant'; a prompt ends with the user's message"),
    ("prompt:\n  - {role: user, content: hi}\n  - {role: system, content: x}\n"
     "  - {role: user, content: '{question}'}\n", 6, "prompt[1]: a system message comes first, and only once"),
    ("prompt:\n  - {role: user, content: '  '}\n  - {role: user, content: '{question}'}\n", 5,
     "prompt[0].content: empty; the APIs refuse an empty message"),
    ("prompt:\n  - {role: user, content: [{type: text, text: '{question}'}]}\n", 5,
     "prompt[0].content: expected text, got a list of parts (multimodal content)"),
    ("prompt:\n  - {from: human, value: '{question}'}\n", 5,
     "prompt[0]: unknown key 'from' (ShareGPT's from/value: map them to role/content)"),
    ("prompt:\n  - {role: user}\n", 5, "prompt[0]: no content; a message is {role: user, content: ...}"),
    ("prompt:\n  - hello\n", 5, "prompt[0]: expected a message {role, content}, got 'hello'"),
    ("prompt:\n  - {role: user, content: hello}\n", 4, "prompt has no {question} placeholder in any message"),
    ("prompt:\n  - {role: user, content: '{question} {answer}'}\n", 4, "prompt uses {answer}"),
    ("prompt: 5\n", 4, "prompt: expected a template such as 'Solve: {question}' or a list of chat messages"),
])
def test_a_chat_prompt_that_cannot_be_sent_is_one_line_with_its_file_and_line(tmp_path, prompt, line, message):
    path = _write(tmp_path, BASE + prompt + QUESTIONS)
    error = _error(path)
    assert f"s.yaml:{line}: {message}" in error, error
    assert "Traceback" not in error and "pydantic" not in error


@pytest.mark.parametrize("model, message", [
    ("{name: gemini-2.0-flash, system_instruction: Be brief.}",
     "prompt: it has a system message and model.system_instruction is set; keep one of them"),
    ("{provider: openai, name: m, base_url: 'http://localhost:8000/v1', endpoint: completions, max_output_tokens: 9}",
     "prompt: model.endpoint completions sends text, not messages; use endpoint: chat"),
    ("{provider: openai, name: m, base_url: 'http://localhost:8000/v1', scorer: {provider: openai, name: m}}",
     "prompt: model.scorer (provider openai) scores text through /v1/completions, which cannot apply a chat "
     "template; score a chat prompt with provider hf"),
])
def test_settings_that_cannot_send_a_chat_are_refused_at_the_prompt(tmp_path, model, message):
    path = _write(tmp_path, f"suite: chat\nmodel: {model}\nsamples: 2\nprompt:\n"
                            "  - {role: system, content: Be exact.}\n  - {role: user, content: '{question}'}\n"
                  + QUESTIONS)
    assert f"s.yaml:4: {message}" in _error(path)


def test_a_message_list_question_is_sent_as_it_is(tmp_path):
    suite = load_suite(_write(tmp_path, BASE + "questions:\n  - id: a\n    question:\n"
                              "      - {role: user, content: 'Keep {braces}'}\n    answer: '7'\n"))
    assert suite.chat
    assert suite.render_prompt(suite.questions[0]) == [{"role": "user", "content": "Keep {braces}"}]


@pytest.mark.parametrize("text, line, message", [
    (BASE + "prompt: 'Q: {question}'\nquestions:\n  - id: a\n    question: [{role: user, content: hi}]\n"
     "    answer: '7'\n  - id: b\n    question: [{role: user, content: ho}]\n    answer: '7'\n",
     6, "question 'a' is a chat (a list of messages), which is sent as it is: the suite's prompt must be the "
        "default {question}"),
    (BASE + "questions:\n  - id: a\n    question: 'text'\n    answer: '7'\n"
     "  - id: b\n    question: [{role: user, content: ho}]\n    answer: '7'\n",
     8, "question 'b' is a chat (a list of messages) but question 'a' is text; a suite's prompts are all text "
        "or all chats"),
    (BASE + "questions:\n  - id: a\n    question:\n      - {role: user, content: hi}\n"
     "      - {role: robot, content: ho}\n    answer: '7'\n",
     8, "questions[0] (a).question[1].role: unknown role 'robot'"),
    (BASE.replace("gemini-2.0-flash}", "gemini-2.0-flash, system_instruction: S}")
     + "questions:\n  - id: a\n    question: [{role: system, content: s}, {role: user, content: hi}]\n"
       "    answer: '7'\n",
     5, "question 'a' is a chat: it has a system message and model.system_instruction is set"),
    (BASE + "questions:\n  - {id: a, question: 5, answer: '7'}\n", 5,
     "questions[0] (a).question: expected text or a list of chat messages ({role, content}), got 5"),
])
def test_a_message_list_question_that_cannot_be_sent_is_one_line_with_its_line(tmp_path, text, line, message):
    error = _error(_write(tmp_path, text))
    assert f"s.yaml:{line}: {message}" in error, error
    assert error.count("must be the default") <= 1  # a problem every question shares is said once


def test_message_list_questions_from_a_jsonl_source_and_their_errors_by_row(tmp_path):
    rows = [{"messages": [{"role": "user", "content": r["question"]}], "answer": r["answer"].split("####")[-1].strip()}
            for r in ROWS[:2]]
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = load_suite(_write(tmp_path, BASE + "questions: {source: q.jsonl, question_field: messages}\n"))
    assert [suite.render_prompt(q) for q in suite.questions] == [r["messages"] for r in rows]

    rows[1]["messages"].append({"role": "assistant", "content": "the answer"})
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert "q.jsonl:2: questions[1] (q-0001).question[1]: the last message is 'assistant'" in _error(
        tmp_path / "s.yaml")


def test_a_messages_column_in_parquet_loads_though_arrow_gives_each_message_every_key(tmp_path):
    """Arrow stores a list of messages as one struct type: a key one message has (`name`) is on
    every message, null where it was absent. A null key is no key (chat templates skip it); a
    set one is still refused."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [{"messages": [{"role": "system", "content": SYSTEM, "name": "tutor"},
                          {"role": "user", "content": "What is 2 + 3?"}], "answer": "5"},
            {"messages": [{"role": "user", "content": "What is 3 + 4?"}], "answer": "7"}]
    table = pa.Table.from_pylist(rows)
    assert table.to_pylist()[1]["messages"][0] == {"role": "user", "content": "What is 3 + 4?", "name": None}
    pq.write_table(table.slice(1), tmp_path / "q.parquet")  # only the row whose messages had no name
    suite = load_suite(_write(tmp_path, BASE + "questions: {source: q.parquet, question_field: messages}\n"))
    assert suite.render_prompt(suite.questions[0]) == [{"role": "user", "content": "What is 3 + 4?"}]
    pq.write_table(table, tmp_path / "q.parquet")
    assert "questions[0] (q-0000).question[0]: unknown key 'name'; a message has role and content" in _error(
        tmp_path / "s.yaml")


# ----------------------------------------------------------------------------- what goes on the wire

@pytest.fixture
def openai_env(emulator, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    return emulator


def _bodies(emulator, before):
    return [r["body"] for r in emulator.requests[before:]]


def _gemini(**kw):
    from rlhf_eval.backends.gemini import GeminiSampler
    return GeminiSampler(ModelConfig(name="gemini-2.0-flash", **kw))


def test_google_genai_sends_a_chat_as_user_and_model_turns_with_its_system_instruction(live):
    before = len(live.requests)
    chat_traces = _gemini().sample(CHAT, 2, 7)
    bodies = _bodies(live, before)
    assert len(bodies) == 2
    assert bodies[0]["contents"] == [{"parts": [{"text": "What is 2 + 3?"}], "role": "user"},
                                     {"parts": [{"text": "A: 5"}], "role": "model"},
                                     {"parts": [{"text": QUESTION}], "role": "user"}]
    assert bodies[0]["systemInstruction"] == {"parts": [{"text": SYSTEM}], "role": "user"}
    assert [b["generationConfig"]["seed"] for b in bodies] == [7, 8]
    # the emulator answers the last user turn: the same answer as to that question alone
    alone = _gemini().sample(QUESTION, 2, 7)
    assert [t.text for t in chat_traces] == [t.text for t in alone]


def test_a_one_message_chat_sends_the_very_body_of_the_text_prompt(live, openai_env):
    """A string prompt's request is what it always was, and a chat of that one user message (with
    the system instruction) is the same request: the same cassette answers both."""
    model = {"system_instruction": SYSTEM, "temperature": 0.5}
    chat = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
    before = len(live.requests)
    _gemini(**model).sample(QUESTION, 1, 3)
    _gemini(**model).sample(chat, 1, 3)
    text, as_chat = _bodies(live, before)
    assert json.dumps(text) == json.dumps(as_chat)
    assert text["contents"] == [{"parts": [{"text": QUESTION}], "role": "user"}]

    from rlhf_eval.backends.openai_compat import OpenAISampler
    config = ModelConfig(provider="openai", name="Qwen/Qwen2.5-7B-Instruct", base_url=f"{live.base_url}/v1", **model)
    before = len(live.requests)
    OpenAISampler(config).sample(QUESTION, 1, 3)
    OpenAISampler(config).sample(chat, 1, 3)
    text, as_chat = _bodies(live, before)
    assert json.dumps(text) == json.dumps(as_chat)
    assert text["messages"] == chat


def test_openai_compatible_servers_get_the_chat_as_messages(openai_env):
    from rlhf_eval.backends.openai_compat import OpenAISampler
    config = ModelConfig(provider="openai", name="Qwen/Qwen2.5-7B-Instruct", base_url=f"{openai_env.base_url}/v1")
    before = len(openai_env.requests)
    chat_traces = OpenAISampler(config).sample(CHAT, 2, 5)
    bodies = _bodies(openai_env, before)
    assert [b["messages"] for b in bodies] == [CHAT, CHAT] and [b["seed"] for b in bodies] == [5, 6]
    alone = OpenAISampler(config).sample(QUESTION, 2, 5)
    assert [t.text for t in chat_traces] == [t.text for t in alone]


def test_google_generativeai_sends_the_chat_as_turns_and_its_system_message_as_the_instruction(live):
    pytest.importorskip("google.generativeai")
    from rlhf_eval.backends.gemini_legacy import LegacyGeminiSampler
    before = len(live.requests)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = LegacyGeminiSampler(ModelConfig(provider="gemini-legacy", name="gemini-2.0-flash"))
        sampler.sample(CHAT, 1, 0)
        sampler.sample(QUESTION, 1, 0)  # the sampler's own model (no system instruction) is untouched
    chat, text = _bodies(live, before)
    assert chat["contents"] == [{"parts": [{"text": "What is 2 + 3?"}], "role": "user"},
                                {"parts": [{"text": "A: 5"}], "role": "model"},
                                {"parts": [{"text": QUESTION}], "role": "user"}]
    assert chat["systemInstruction"] == {"parts": [{"text": SYSTEM}]}
    assert "systemInstruction" not in text and text["contents"] == [{"parts": [{"text": QUESTION}], "role": "user"}]


def test_the_emulator_refuses_a_role_the_gemini_api_refuses(live):
    import httpx
    response = httpx.post(f"{live.base_url}/v1beta/models/gemini-2.0-flash:generateContent",
                          headers={"x-goog-api-key": TEST_KEY},
                          json={"contents": [{"role": "system", "parts": [{"text": "x"}]},
                                             {"role": "user", "parts": [{"text": "hi"}]}]})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Please use a valid role: user, model."


# ----------------------------------------------------------------------------- record, replay, export

def test_a_chat_suite_records_through_the_emulator_replays_offline_and_exports_trl_conversational_rows(
        tmp_path, live, monkeypatch):
    rows = [{"messages": [{"role": "user", "content": r["question"]}], "answer": r["answer"].split("####")[-1].strip()}
            for r in ROWS]
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _write(tmp_path, BASE.replace("gemini-2.0-flash}", f"gemini-2.0-flash, system_instruction: '{SYSTEM}'}}")
           + "questions: {source: q.jsonl, question_field: messages}\n", name="chat.yaml")
    cassettes = tmp_path / "cassettes"
    recorded = run_suites([tmp_path / "chat.yaml"], record_mode="once", cassette_dir=cassettes, rootdir=tmp_path)
    monkeypatch.setenv("RLHF_EVAL_GEMINI_BASE_URL", DEAD)
    monkeypatch.delenv("GEMINI_API_KEY")
    replayed = run_suites([tmp_path / "chat.yaml"], cassette_dir=cassettes, rootdir=tmp_path,
                          export=tmp_path / "export", report_json=tmp_path / "report.json")
    assert replayed.to_dict()["suites"][0]["questions"] == recorded.to_dict()["suites"][0]["questions"]
    suite = replayed.suites[0]
    assert [q.prompt for q in suite.questions] == [[{"role": "system", "content": SYSTEM}, *r["messages"]]
                                                    for r in rows]
    # the report file keeps the chat
    stored = json.loads((tmp_path / "report.json").read_text())["suites"][0]["questions"][0]["prompt"]
    assert stored == suite.questions[0].prompt

    records = suite_records(suite).records
    prompts = [q.prompt for q in suite.questions]
    assert all(row["prompt"] in prompts for rows_out in records.values() for row in rows_out)
    assert [row["prompt"] for row in records["grpo_prompts"]] == prompts
    sft, groups = records["sft"], records["grpo_groups"]
    assert sft and all(r["completion"][0]["role"] == "assistant" and len(r["completion"]) == 1 for r in sft)
    assert all(c == [{"role": "assistant", "content": t.text}]
               for g, q in zip(groups, suite.questions) for c, t in zip(g["completions"], q.traces))
    written = (tmp_path / "export" / "chat" / "sft.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in written] == sft
    try:
        from trl.data_utils import is_conversational
    except Exception:  # noqa: BLE001 - trl (and torch) are optional
        return
    for name, rows_out in records.items():
        for row in rows_out:
            assert is_conversational(row), name


# ----------------------------------------------------------------------------- reward functions

SEEN: list[dict] = []


def chat_probe(completions, prompts, **kwargs):
    SEEN.append(copy.deepcopy({"completions": completions, "prompts": prompts, "question": kwargs["question"]}))
    rewards = [float(len(c[0]["content"])) for c in completions]
    completions[0][0]["content"] = "edited"  # must not reach the next function
    prompts[0][0]["content"] = "edited"
    return rewards


def chat_probe_after(completions, prompts, **kwargs):
    SEEN.append(copy.deepcopy({"completions": completions, "prompts": prompts, "question": kwargs["question"]}))
    return [None] * len(completions)


@pytest.fixture
def probes():
    """The two probes registered for one test: a later test (of this worker) does not see them."""
    reward_function("chat_probe")(chat_probe)
    reward_function("chat_probe_after")(chat_probe_after)
    yield
    REWARDS.unregister("chat_probe")
    REWARDS.unregister("chat_probe_after")


def test_reward_functions_get_prompts_and_completions_as_trls_grpo_trainer_passes_a_conversational_prompt(tmp_path,
                                                                                                          probes):
    suite = load_suite(_write(tmp_path, BASE + "reward_funcs: [chat_probe, chat_probe_after, accuracy]\nprompt:\n"
                              "  - {role: user, content: '{question}'}\nquestions:\n"
                              "  - {id: a, question: 'What is 3 + 4?', answer: '7'}\n"))
    question = suite.questions[0]
    texts = ["A: 7", "A: 8"]
    traces = [Trace(text=t, finish_reason="STOP", token_count=2, logp=None, seed=i, model_version="m")
              for i, t in enumerate(texts)]
    SEEN.clear()
    result = score_question(suite, question, traces)
    chat = [{"role": "user", "content": "What is 3 + 4?"}]
    # TRL: completions = [[{"role": "assistant", "content": text}] ...] when is_conversational(prompt)
    assert SEEN[0]["prompts"] == [chat, chat] and SEEN[0]["question"] == ["What is 3 + 4?"] * 2
    assert result.rewards_by_function["chat_probe"] == [4.0, 4.0]
    assert result.rewards_by_function["accuracy"] == [1.0, 0.0]
    assert list(result.rewards) == [5.0, 4.0]  # the weighted sum: chat_probe + accuracy (chat_probe_after: None)
    completions = [[{"role": "assistant", "content": t}] for t in texts]
    # each function is given its own copy: what the first edited, the next never sees
    assert SEEN[0]["completions"] == SEEN[1]["completions"] == completions
    assert SEEN[1]["prompts"] == [chat, chat]
    try:
        from trl.data_utils import is_conversational
    except Exception:  # noqa: BLE001
        return
    assert is_conversational({"prompt": SEEN[1]["prompts"][0]})


# ----------------------------------------------------------------------------- the report

def test_reports_with_text_or_chat_prompts_load_and_the_html_shows_each_message_under_its_role():
    old = ReportQuestion.model_validate({"id": "a", "prompt": "Q: 1?"}, strict=True)
    chat = ReportQuestion.model_validate({"id": "b", "prompt": CHAT}, strict=True)
    assert old.prompt == "Q: 1?" and chat.prompt == CHAT
    assert prompt_html("a < b") == '<div class="pre">a &lt; b</div>'
    shown = prompt_html(CHAT)
    assert shown.count('<div class="msg">') == 4
    assert shown.index(">system<") < shown.index(">user<") < shown.index(">assistant<")
    assert "A: 5" in shown
    from rlhf_eval import ui  # the viewer (gradio is imported only by build_app)
    report = {"suites": [{"name": "s", "questions": [{"id": "b", "passed": True, "metrics": {}, "traces": [],
                                                      "pairs": [], "prompt": CHAT + [{"role": "user",
                                                                                      "content": "<b>"}]}]}]}
    viewed = ui.traces_html(ui.question_detail(report, "s", "b"))
    assert "chat prompt" in viewed and "&lt;b&gt;" in viewed
    assert viewed.index(">SYSTEM<") < viewed.index(">USER<") < viewed.index(">ASSISTANT<")


# ----------------------------------------------------------------------------- the hf scorer

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def test_the_hf_scorer_applies_the_tokenizers_chat_template_and_refuses_a_chat_without_one():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from rlhf_eval.backends.hf import HFScorer
    from rlhf_eval.sampling import ScoringError
    from rlhf_eval.suite import ScorerConfig

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(["<|user|>what is two plus two\n<|assistant|>\nfour"] * 20,
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"], show_progress=False,
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=len(tok), n_positions=64)).eval()
    scorer = HFScorer(ScorerConfig(provider="hf", name="tiny"), model=model, tokenizer=tok)
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what is two plus two"}]
    with pytest.raises(ScoringError, match="the prompt is a chat .* the tokenizer has no chat template"):
        scorer.score(chat, ["four"])
    tok.chat_template = CHAT_TEMPLATE
    rendered = "<|system|>be brief\n<|user|>what is two plus two\n<|assistant|>\n"
    assert scorer.context(chat) == rendered
    assert scorer.score(chat, ["four", "five"]) == scorer.score(rendered, ["four", "five"])
