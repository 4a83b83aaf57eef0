"""A local emulator of the Gemini REST ``generateContent`` API (Developer API and Vertex AI
paths) and of an OpenAI-compatible server (vLLM / SGLang / llama.cpp style), for tests and
offline recording.

Usage::

    from rlhf_eval.emulator import Emulator
    with Emulator(port=0, latency_ms=0) as emu:     # server thread on 127.0.0.1; port 0 = any free port
        client = genai.Client(api_key="any", http_options=types.HttpOptions(
            base_url=emu.base_url, api_version="v1beta"))
        vertex = genai.Client(vertexai=True, project="p", location="us-central1",
            credentials=google.oauth2.credentials.Credentials(token="t"),
            http_options=types.HttpOptions(base_url=emu.base_url, api_version="v1beta1"))
        oai = openai.OpenAI(base_url=f"{emu.base_url}/v1", api_key="x")
        ...
        emu.requests        # one dict per request received: method, path, query, model, body, status
        emu.stats           # counters: requests, failures_injected, rate_limited, marker_errors, by_status
        emu.reset()         # forget requests, xN fault counters, implicit-seed counters and stats

or from a shell: ``python -m rlhf_eval.emulator --port 8765 [--host 127.0.0.1] [--latency-ms 0]``
(also installed as ``rlhf-eval-emulator``). Server-wide knobs for failure and load tests
(``fail_rate``, ``rate_limit_rpm``, ``pad_to_tokens``, ...) are keyword arguments of
``Emulator(...)`` and flags of the command: see "Server-wide knobs" below. All are off by
default, and then every answer is exactly what it was without them.

Nothing it returns comes from a real model, and every response says so in a free-form field
the real servers have too: Gemini's ``"modelVersion": "<model>-emulator"``; on the
OpenAI-compatible side the ``id`` (``chatcmpl-emulator-...`` / ``cmpl-emulator-...``) and, where
the imitated server sends a build id, the ``system_fingerprint`` (``b0000-emulator`` for
llama.cpp, ``fp_<hex>_emulator`` for DeepSeek; vLLM sends null). It needs no network and no file
outside this package.

**Ground truth.** The response shapes follow real bodies recorded by other projects (the "wire
corpus": Gemini Developer API ``v1beta`` and Vertex AI ``v1beta1`` bodies G01-G12, vLLM,
llama.cpp and DeepSeek bodies O02-O05, S01; cited below by those names).
``tests/test_emulator_wire_shapes.py`` sends each corpus request to the emulator and compares the
set of key paths of the answer with the real body's (a short, documented allow-list aside).

Endpoints
---------
* Gemini Developer API: ``POST /v1beta/models/{model}:generateContent`` and
  ``POST /v1/models/{model}:generateContent``.
* Gemini on Vertex AI: ``POST /{v1,v1beta1}/projects/{project}/locations/{location}/publishers/
  google/models/{model}:generateContent`` (what google-genai posts with ``vertexai=True``), and
  the express-mode form ``POST /{v1,v1beta1}/publishers/google/models/{model}:generateContent``.
  See "Vertex AI" below.
* OpenAI-compatible: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``,
  ``GET /v1/models/{id}``. See "OpenAI-compatible endpoints" below. (No clash with Gemini:
  its ``/v1/models/{m}:generateContent`` always has a colon.)

``:streamGenerateContent`` answers 501 UNIMPLEMENTED; any other path or method answers 404.
Every Gemini error body is a ``google.rpc.Status`` JSON object (``{"error": {code, message,
status[, details]}}``); OpenAI-style errors are described in their section.

* **Auth**: the key is read from the ``x-goog-api-key`` header or the ``?key=`` query
  parameter. Any non-empty key is accepted; a missing or empty one gives the real 400
  ``API_KEY_INVALID`` body (ErrorInfo + LocalizedMessage details). (Vertex AI and the OpenAI
  endpoints authenticate differently, see their sections.)
* **Parsing** is tolerant: keys are normalised from snake_case to camelCase at every level;
  numbers may be floats (``topK: 40.0``) or numeric strings; enums may be ints or names.
  ``?$alt=json;enum-encoding=int`` (sent by the legacy google-generativeai SDK) makes the
  response encode ``finishReason``, ``blockReason`` and safety enums as integers, as Google does.
* **Prompt** = every text part of the user turns (role ``user`` or none), joined with
  ``"\\n"``. The ``systemInstruction`` text only counts towards ``promptTokenCount``.
  Fault markers (below) are removed and whitespace is collapsed before the answer is chosen.

Answers (deterministic from model, prompt, seed and candidate index)
---------------------------------------------------------------------
* **Trace bank** (``data/bank.json.gz``, built by ``build_bank.py``): the 400 questions of
  GSM8K's ``example_model_solutions.jsonl`` (MIT licence, (c) 2021 OpenAI, ``data/LICENSE``),
  each with the text of its four GPT-3-written solutions (6B/175B, finetuning/verification;
  some right, some wrong). The bank holds no correctness labels and no ground truth: the
  emulator never consults an answer key.
* If the prompt contains a bank question (whitespace-insensitive substring; if several
  occur, the one starting last), candidate ``j`` of a request with ``seed`` ``s`` is solution
  ``blake2b(model, prompt, s, j) mod 4``. With ``temperature: 0`` the choice is
  ``blake2b(model, prompt) mod 4``: every candidate and every seed get the same text
  (greedy decoding).
* Otherwise, if the prompt has multiple-choice options (at least two distinct letters A-J
  on lines like ``A) ...``, ``(B) ...``, ``C. ...``), the answer is one reasoning sentence and
  ``The answer is (X).`` with X picked by the same hash among the options found; otherwise a
  short generic reasoning and ``The answer is N.`` with N one of the numbers in the prompt
  (picked by the hash), or ``The answer is unknown.`` if the prompt has no number.
* ``stopSequences``: the text is cut before the first occurrence of any of them (``STOP``).
  ``maxOutputTokens``: a longer text is truncated to that many tokens and gets
  ``finishReason: "MAX_TOKENS"``; otherwise ``"STOP"``. (A thinking model's thoughts count
  against ``maxOutputTokens`` too: see "Thinking models".)
* **No seed** (``generationConfig.seed`` absent or null -- e.g. the legacy google-generativeai
  SDK, which cannot send one): the n-th time (0-based) the server answers that exact request
  -- same path, same canonical body (keys sorted; Gemini keys camelCased first) -- it uses
  implicit seed ``n``, exactly as if ``seed: n`` had been sent. So k identical requests give k
  different samples, like a real API, and the sequence is deterministic given the order of
  requests: the first answer is the seed-0 answer, and :meth:`Emulator.reset` starts every
  sequence again. Only answered requests count: one failed by a fault marker or by a
  server-wide knob (``fail_rate``, ``rate_limit_rpm``; below) does not, so a retry after an
  injected 503 gets the sample the failed attempt would have got.
  ``responseId`` (and OpenAI's ``id``) of the n-th answer, n >= 1, hashes n in as well.
  Requests that carry a seed are unaffected. The same rule holds on every endpoint
  (Developer API, Vertex AI, OpenAI-compatible; one counter per path and body).

Tokenizer and log-probabilities
-------------------------------
* Tokens: ``re.findall(r"\\w+|[^\\w\\s]|\\s+", text)`` -- a word, one punctuation character,
  or a run of whitespace (whitespace is a token of its own, never glued to a word). The tokens
  join back to the text exactly, and ``tokens(a + b) == tokens(a) + tokens(b)`` whenever the
  last character of ``a`` and the first of ``b`` are not both word characters and not both
  whitespace -- e.g. a context ``a`` ending in ``"\\n"``, ``" "`` or ``":"`` and a completion
  ``b`` starting with a word -- which is how a scorer finds where the completion starts.
  Token id = ``zlib.crc32(token.encode("utf-8")) % 2**18``.
* Base distribution: an add-one smoothed **unigram** model over all tokens of all bank
  solutions (questions excluded), counted once when the bank is loaded. Its outcomes are the
  V distinct corpus tokens plus one extra entry "unseen" with count 0, which every token not
  in the corpus maps to; so with N the number of corpus tokens,
  ``p(t) = (count(t) + 1) / (N + V + 1)`` (an unseen token: ``1 / (N + V + 1)``), and the
  V + 1 entries sum to 1.
* **Each model name m has a temperature** ``tau_m``: ``1.0`` for names starting ``gemini``
  (case-insensitive, a leading ``models/`` ignored), and for any other name
  ``tau_m = 0.8 + 0.4 * (zlib.crc32(m.encode("utf-8")) % 1000) / 999`` (in [0.8, 1.2]; the
  name exactly as sent, e.g. ``Qwen/Qwen2.5-Math-7B-Instruct``). The model's token logp is the
  properly normalised tempered unigram
  ``log p_m(t) = log p(t) / tau_m - log Z(tau_m)``, ``Z(tau) = sum of p(u) ** (1 / tau)`` over
  the same V + 1 entries (seen tokens and "unseen"; ``math.fsum``, computed once per tau;
  ``Z(1) = 1``), so p_m sums to 1 over them and every unseen token gets the "unseen" entry's
  probability. For ``gemini*`` this is the base model itself; two model names with different
  ``crc32 % 1000`` get different logps for the same text (e.g. a policy and its reference
  model give non-zero DPO margins), while the token order by probability is the same for all.
* A sequence's logp under model m is the sum of ``log p_m`` over its tokens, in order. It is
  a function of the text and the model name alone -- it knows nothing about correctness.
  (``rlhf_eval.emulator.load_bank().model_for(m).text_logp(text)`` computes it;
  ``load_bank().model`` is the tau = 1 model.) Everything reported for model m uses it:
  Gemini ``logprobsResult``, ``avgLogprobs`` and ``topCandidates``; OpenAI chat and completion
  logprobs, ``top_logprobs``, echoed-prompt logprobs and ``prompt_logprobs``.
* ``topCandidates`` (``logprobs: K``): K entries per step sorted by the model's
  logProbability desc (ties by token), always including the chosen token; the other K-1 come
  from the 64 most frequent bank tokens at an offset derived from (chosen token id, step).

Model families (by model-name prefix; a leading ``models/`` is ignored)
-----------------------------------------------------------------------
* ``gemini-2.0*``, ``gemini-1.5*`` -- the "logprobs family": ``responseLogprobs: true`` returns
  ``logprobsResult`` with ``chosenCandidates`` (token, tokenId, logProbability per token) and
  ``logProbabilitySum``; ``logprobs: K`` (1..20) adds ``topCandidates``. Every candidate
  carries ``avgLogprobs`` (= logProbabilitySum / tokens), even without ``responseLogprobs``
  (G11). ``candidateCount`` 1..8.
* ``gemini-2.5*`` -- ``responseLogprobs: true`` gives 400 INVALID_ARGUMENT
  "Logprobs is not enabled for models/<model>". ``candidateCount`` 1..8. No ``avgLogprobs``
  (G05, G12). A thinking model (see "Thinking models").
* ``gemini-3*`` and any other name -- ``responseLogprobs: true`` gives 400 "Logprobs is not
  supported for this model."; ``candidateCount`` > 1 gives 400 INVALID_ARGUMENT "Multiple
  candidates is not enabled for this model". No ``avgLogprobs`` (G03). ``gemini-3*`` is a
  thinking model; other names are not.

(These are the Developer API's families; on Vertex AI ``gemini-2.5*`` joins the logprobs
family, see below.)

For every model: ``candidateCount`` > 8 (or < 0) gives 400 INVALID_ARGUMENT
(``candidateCount: 0`` means 1); ``logprobs`` outside [0, 20], or set without
``responseLogprobs: true``, gives 400.

Response
--------
``candidates`` (each ``content: {role: "model", parts: [{text}]}``, ``finishReason``, ``index``),
``usageMetadata``, ``modelVersion: "<model>-emulator"`` and a deterministic ``responseId`` (hash
of model and request body, and of the implicit seed if there is one).

* ``index``: sent for every candidate by the Developer API for ``gemini-2.5*``, ``gemini-3*`` and
  other names (``"index": 0`` included; G03, G04, G05, G12). The Developer API for
  ``gemini-1.5*``/``gemini-2.0*`` and Vertex AI (every model) omit ``index`` when it is 0, as
  proto3 JSON drops a zero int (G01, G02, G06, G09, G11), and send 1, 2, ... for the others.
* ``usageMetadata``: ``promptTokenCount`` (tokens of user text + system instruction),
  ``candidatesTokenCount`` (the answers' tokens, summed over candidates; omitted when 0, as
  proto3 JSON does), ``thoughtsTokenCount`` (thinking models; omitted when 0),
  ``totalTokenCount`` = prompt + candidates + thoughts, ``promptTokensDetails``
  (``[{modality: "TEXT", tokenCount}]``). ``candidatesTokensDetails`` (the same, for the
  answers) where the real API sends it: Vertex AI, and the Developer API for
  ``gemini-1.5*``/``gemini-2.0*`` (G01, G09, G11; not G03, G05, G12). The Developer API adds
  ``serviceTier: "standard"`` (its 2026 responses, G04, G05); Vertex AI ``trafficType:
  "ON_DEMAND"`` (G01, G07, G09).

Thinking models
---------------
``gemini-2.5*`` and ``gemini-3*`` think before they answer (a leading ``models/`` ignored):

* ``usageMetadata.thoughtsTokenCount`` = the tokens of the thought text (below), summed over
  candidates; ``candidatesTokenCount`` counts the answer only, and ``totalTokenCount`` = prompt
  + candidates + thoughts (G01, G03, G12).
* ``thinkingConfig.thinkingBudget: 0`` turns thinking off: no thoughts, no
  ``thoughtsTokenCount`` (G05) -- except on ``gemini-2.5-pro*``, which answers 400
  INVALID_ARGUMENT "Budget 0 is invalid. This model only works in thinking mode.".
  ``gemini-2.5-flash-lite*`` thinks only when a budget is sent (> 0, or -1 = dynamic). A
  positive budget does not change the thoughts (they are shorter than any budget the API
  accepts). ``thinkingConfig`` on a model that does not think is ignored.
* ``thinkingConfig.includeThoughts: true``: the candidate's parts are the thought summary
  ``{"text": <thought>, "thought": true}``, then the answer ``{"text": <answer>,
  "thoughtSignature": <base64>}`` (G03). The signature is deterministic and opaque; its bytes
  start ``rlhf-eval-emulator/thought-signature/``.
* **The answer does not change**: it is exactly the text the model gives without thinking
  (same bank solution, same seed rules). The thought text is deterministic (prompt, answer,
  seed, candidate) and holds a **decoy**: it names a *different* final answer -- another number
  ("A first guess would be 20, but let me check that...") or, for a multiple-choice answer,
  another offered option ("option (B)") -- that occurs nowhere in the answer text, and no other
  digit or ``(X)`` letter. A consumer that grades the reasoning instead of the answer is caught.
* **Thoughts count against** ``maxOutputTokens``: the answer gets ``maxOutputTokens -
  thoughtsTokenCount`` tokens (then ``MAX_TOKENS``). With no room left the candidate is
  ``{content: {role: "model"}, finishReason: "MAX_TOKENS"}`` -- no parts, no
  ``candidatesTokenCount``, ``thoughtsTokenCount`` = ``maxOutputTokens`` (G04).
* ``avgLogprobs`` (where sent, see Vertex AI) is the mean logprob over **all** generated tokens,
  the thought tokens (their tokens under the model's own unigram logps) and the answer's
  together: ``(thought logp + answer logp) / (thoughtsTokenCount + answer tokens)``. So
  ``avgLogprobs * candidatesTokenCount`` is NOT the answer's log-probability, as on the real API
  (G01: -7.60 against -0.069 for the answer's chosen tokens). ``chosenCandidates`` and
  ``topCandidates`` cover the answer's tokens only (G01). Without thinking, avgLogprobs times the
  answer's token count is the answer's logp.

Vertex AI
---------
Same request parsing, answers, seeds, usage, faults and response shape as the Developer API,
except:

* **Auth**: ``Authorization: Bearer <token>`` (any non-empty token) is required on the
  ``projects/{p}/locations/{l}/...`` path; no API key is read there. Without one: 401
  ``{"error": {"code": 401, "status": "UNAUTHENTICATED", "message": "Request is missing required
  authentication credential. Expected OAuth 2 access token, ...", "details": [ErrorInfo
  CREDENTIALS_MISSING]}}``. The express-mode path (no project/location) takes a bearer token or
  an API key (``x-goog-api-key`` / ``?key=``), else the same 401.
* **Capabilities**: ``gemini-2.5*`` models DO return logprobs on Vertex (``responseLogprobs``
  -> ``logprobsResult``, ``logprobs: K`` -> ``topCandidates``), i.e. they are in the logprobs
  family with ``gemini-2.0*``/``gemini-1.5*``. ``gemini-3*`` (and other names) still refuse: 400
  INVALID_ARGUMENT "Unable to submit request because Logprobs is not supported for this model."
  (and ``candidateCount`` > 1 is refused as on the Developer API).
* **avgLogprobs arrives unasked** on every Vertex candidate that has answer tokens, whatever
  the model (G01, G02, G09; see "Thinking models" for what it averages).
* **Shape**: no ``logprobsResult.logProbabilitySum`` (the sum must come from
  ``chosenCandidates``; G01, G02); no ``index`` 0; ``createTime`` (a deterministic instant in
  2026, derived from the ``responseId``, ``"2026-05-27T16:53:45.443719Z"`` style);
  ``usageMetadata.trafficType: "ON_DEMAND"`` and ``candidatesTokensDetails`` (see "Response").
* Fault markers give the same errors as on the Developer API (``[[emulator:429]]`` included,
  with its RetryInfo); the ``xN`` counters of Vertex requests are per path and body.

OpenAI-compatible endpoints
---------------------------
An OpenAI-compatible server (as vLLM, SGLang, llama.cpp's ``llama-server`` or DeepSeek's API
expose it): **any model name works**. The model name picks the server whose response shape is
imitated and whether the model reasons (rules below); the answers are the same for all.
``Authorization: Bearer <anything>`` is accepted, and so is no header at
all (local servers need no key). Request bodies are snake_case OpenAI JSON; numbers may be
floats or numeric strings; unknown fields are ignored. ``stream: true`` gives 400 (no
streaming). The official ``openai`` SDK parses every response unchanged
(``OpenAI(base_url=f"{emu.base_url}/v1", api_key="x")``).

**Same engine as the Gemini side.** Choice ``j`` of a request is chosen exactly like
candidate ``j`` of a Gemini request with the same model name, prompt and seed (same bank, same
``blake2b`` hash, same greedy rule for ``temperature: 0``, same :func:`synthesize` fallback),
and every token's logprob is the model's context-independent tempered unigram ``log p_m(t)``
(see "Tokenizer and log-probabilities"; a ``gemini*`` name gets the very same values on both
sides) -- for a generated token and for a prompt token alike. Hence ``logp_m(text)`` is the
same wherever the text appears, and **the scorer agrees with the sampler**: scoring a text the
emulator generated under model m (``/v1/completions`` with ``model: m``, ``echo: true``,
prompt = context + text) gives exactly the logp it reported when it sampled that text under
m, provided the tokenisation splits cleanly at the boundary (the context's last character
and the text's first are not both word characters nor both whitespace -- e.g. a context
ending in ``"A:"``, ``"A: "`` or ``"\\n"`` before a text starting with a word), just as a real
tokenizer needs. Scoring under another model name gives that model's (different) logps. Echoed prompt tokens and generated tokens
are separate sequences (never re-tokenised together), as on real servers.

**Which server** (model name, case-insensitive):

=====================  ==========  ===========================================================
name                   imitates    shape
=====================  ==========  ===========================================================
``llama-cpp*``         llama.cpp   chat: ``{choices: [{finish_reason, index, message,
                                   [logprobs]}], created, model, system_fingerprint:
                                   "b0000-emulator", object, usage, id}`` (``logprobs`` only
                                   when asked); completions: the same keys with ``text``
                                   (O03), ids ``chatcmpl-emulator-<hex>`` on both endpoints.
``deepseek-*``         DeepSeek    ``id`` a UUID, ``system_fingerprint: "fp_<10 hex>_emulator"``
                       API         (the real one: ``fp_5417b77867_prod0225``), usage with
                                   ``prompt_tokens_details: {cached_tokens}``,
                                   ``prompt_cache_hit_tokens``, ``prompt_cache_miss_tokens``
                                   (O05). (``deepseek-ai/...`` names are vLLM-served.)
anything else          vLLM        ``system_fingerprint: null`` (O04); chat messages carry
                                   ``refusal``, ``annotations``, ``audio``, ``function_call``
                                   (null) and ``reasoning`` (or ``reasoning_content``); chat
                                   choices ``stop_reason`` (the stop string that ended the
                                   text, else null), ``token_ids``, ``routed_experts`` (null);
                                   chat top level ``service_tier``, ``prompt_logprobs``,
                                   ``prompt_token_ids``, ``prompt_text``,
                                   ``kv_transfer_params``, ``metrics`` (null); chat usage
                                   ``prompt_tokens_details: {cached_tokens: 0,
                                   multimodal_tokens: null}``. Completions (O02): ``id``,
                                   ``object``, ``created``, ``model``, ``choices: [{text,
                                   index, logprobs, finish_reason[, prompt_logprobs]}]``,
                                   ``usage``, ``system_fingerprint: null``.
=====================  ==========  ===========================================================

``system_fingerprint`` is a backend build or cache id, never the model; ``model`` echoes the
requested name; ``created`` is 0.

**Reasoning models.** Which models reason, and how the reasoning is sent (model name,
case-insensitive, first rule that matches):

===========================================  ==================================================
name contains                                reasoning comes as
===========================================  ==================================================
``reasoner`` or ``-r1``                      ``message.reasoning_content`` (DeepSeek, older
                                             vLLM, SGLang; e.g. ``deepseek-reasoner``,
                                             ``deepseek-ai/DeepSeek-R1-Distill-Qwen-7B``; O05)
``glm``                                      ``message.reasoning`` (newer vLLM; ``zai/GLM-5.2``;
                                             O04)
``qwq``, or ``qwen3`` without ``instruct``   inline ``<think>\\n...\\n</think>\\n\\n`` at the start
or ``coder``                                 of ``content`` (llama.cpp, or vLLM without a
                                             reasoning parser; ``Qwen/Qwen3-8B``)
anything else                                no reasoning
===========================================  ==================================================

The marker ``[[emulator:reasoning=MODE]]`` (``reasoning_content``, ``reasoning``, ``think`` or
``none``) chooses for any model name, on any server (it is removed from the prompt like every
marker, so the answer is the one the unmarked prompt gets).

* The answer (``content``, after ``</think>\\n\\n`` for inline reasoning) is exactly the text the
  same model name gives without reasoning (``[[emulator:reasoning=none]]``). The reasoning text
  is deterministic and holds a **decoy** answer, as Gemini's thoughts do (see "Thinking
  models"): another number or option letter, absent from the answer.
* Generated tokens are ``<think>`` (one token), the tokens of ``"\\n" + reasoning + "\\n"``,
  ``</think>`` (one token), ``"\\n\\n"``, then the answer's tokens. ``usage.completion_tokens``
  counts them all, reasoning INCLUDED (O04: 118 incl. 108; O05: 789 incl. 415); with a reasoning
  field ``usage.completion_tokens_details.reasoning_tokens`` = all but the answer's tokens (no
  ``completion_tokens_details`` for inline ``<think>``: no parser counted them).
* Chat ``logprobs`` cover ALL generated tokens, as vLLM reports them: the reasoning's, then the
  answer's. For inline ``<think>`` their texts tile ``content`` exactly, tags included; with a
  reasoning field they tile ``"<think>\\n" + reasoning + "\\n</think>\\n\\n" + content``. Either
  way the answer's tokens are a suffix whose texts concatenate exactly to ``content``, with the
  logprobs (and ``top_logprobs``) of the same answer without reasoning.
* ``max_tokens`` / ``max_completion_tokens`` bound reasoning and answer together: a cut inside
  the answer shortens it (``finish_reason: "length"``); a cut inside the reasoning gives
  ``content: null`` and the partial reasoning (inline: an unclosed ``<think>`` span). Stop
  sequences apply to the answer only.
* ``/v1/completions`` has no reasoning parser: a reasoning model's ``text`` starts with the
  inline ``<think>`` span (whatever the style), its tokens in ``logprobs`` too, and
  ``completion_tokens`` counts them (no ``completion_tokens_details``).

``GET /v1/models`` -> ``{"object": "list", "data": [{"id", "object": "model", "created": 0,
"owned_by": "rlhf-eval-emulator"}]}`` listing ``Qwen/Qwen2.5-Math-7B-Instruct``,
``meta-llama/Llama-3.1-8B-Instruct``, ``llama-cpp``, ``llama-cpp-strict``;
``GET /v1/models/{id}`` -> that card for any id.

``POST /v1/chat/completions``

* Request: ``model`` (required), ``messages`` (required, non-empty; ``content`` a string or
  a list of ``{"type": "text", "text"}`` parts). **Prompt** = the text of every ``user``
  message/part, joined with ``"\\n"`` (as the Gemini side joins user parts); ``system`` /
  ``developer`` text only counts towards ``prompt_tokens``; ``assistant``/``tool`` turns are
  ignored. ``temperature`` (0..2; 0 = greedy), ``top_p`` (0..1, accepted, no effect),
  ``max_completion_tokens`` or ``max_tokens`` (>= 1; a longer answer is cut to that many
  tokens with ``finish_reason: "length"``; default: no limit), ``stop`` (string or list: the
  text is cut before the first occurrence), ``seed`` (absent: implicit seeds, above), ``n``
  (1..8), ``logprobs`` (bool), ``top_logprobs`` (0..20, needs ``logprobs: true``).
* Response: ``{"id": "chatcmpl-emulator-<hash>", "object": "chat.completion", "created": 0,
  "model", "choices": [{"index", "message": {"role": "assistant", "content"}, "logprobs",
  "finish_reason": "stop" | "length"}], "usage": {"prompt_tokens", "completion_tokens",
  "total_tokens"}, "system_fingerprint"}`` plus the imitated server's fields (table above).
  ``logprobs`` is null unless asked, else ``{"content": [{"token", "logprob", "bytes",
  "top_logprobs": [{"token", "logprob", "bytes"}, ...]}], "refusal": null}`` -- one entry per
  generated token; ``top_logprobs`` holds N entries (``[]`` for N = 0): the same N
  alternatives, chosen token included, that the Gemini side's ``topCandidates`` gives with
  ``logprobs: N``. (llama.cpp: ``{"content": [...]}`` alone, each entry and alternative with
  the token ``id`` first.)

``POST /v1/completions`` (legacy)

* Request: ``model``, ``prompt`` (a string, or a list of strings: then choice
  ``index = prompt_index * n + j`` and choice ``j`` of each prompt is what a single-prompt
  request would get), ``max_tokens`` (default **16**, as OpenAI and vLLM; 0 is allowed only
  with ``echo``), ``echo`` (bool), ``logprobs`` (int 0..5; 0 = chosen-token logprobs only),
  ``seed``, ``n`` (1..8), ``temperature``, ``top_p``, ``stop``, and vLLM's extension
  ``prompt_logprobs`` (int 0..20). Generation is the Gemini side's: a bank question in the
  prompt gives a bank solution, anything else (e.g. a text sent for scoring) the generic answer.
* Response: ``{"id": "cmpl-emulator-<hash>", "object": "text_completion", "created": 0, "model",
  "choices": [{"text", "index", "logprobs", "finish_reason"[, "prompt_logprobs"]}], "usage",
  "system_fingerprint"}``. ``logprobs`` (null unless asked) = ``{"tokens", "token_logprobs",
  "top_logprobs", "text_offset"}``: ``top_logprobs[i]`` maps token -> logprob for the chosen
  token plus N alternatives (OpenAI: "up to logprobs+1 elements"); ``text_offset`` are
  character offsets into the returned ``text``. With ``echo: true`` the ``text`` is prompt +
  generated text and the arrays cover the prompt's tokens first; the first prompt token has
  ``token_logprobs[0] = null`` and ``top_logprobs[0] = null``, exactly as OpenAI and vLLM
  answer. With ``max_tokens: 0`` and echo, only the echoed prompt is returned
  (``finish_reason: "length"``). ``prompt_logprobs`` (vLLM's shape): ``null`` for the first
  prompt token, then per prompt token ``{"<token_id>": {"logprob", "rank", "decoded_token"}}``
  with the actual token first and N alternatives; ``rank`` is the token's true 1-based rank
  under the model's unigram model (the same for every tau). ``usage.prompt_tokens`` counts each prompt once;
  ``completion_tokens`` counts generated tokens only (not the echo).

**llama.cpp imitation** (model names starting ``llama-cpp``, case-insensitive), as
llama.cpp's server behaved in late 2026:

* ``llama-cpp*``: chat completions sample as usual, logprobs included. ``/v1/completions``
  **silently ignores** ``echo``: ``text`` is the generated text only, and its ``logprobs``
  have llama.cpp's current shape (S01), not the legacy one: ``{"content": [{"id", "token",
  "logprob", "bytes", "top_logprobs": [{"id", "token", "logprob", "bytes"}, ...]}]}``, one entry
  per generated token (``top_logprobs`` with ``logprobs`` = N alternatives, ``[]`` for 0) -- no
  ``tokens`` / ``token_logprobs`` / ``text_offset``, and nothing for the prompt a scorer sent.
  ``prompt_logprobs`` is ignored too. ``max_tokens`` has no default limit, and 0 is accepted
  (nothing generated).
* ``llama-cpp-strict*``: the same, but ``echo: true`` is refused:
  400 ``{"error": {"code": 400, "message": "echo is not supported", "type": "invalid_request_error"}}``.
* Every error for a ``llama-cpp*`` model has llama.cpp's shape ``{"error": {"code", "message",
  "type"}}``.

**Errors** otherwise have OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``:
400 ``invalid_request_error`` for a bad request (``param`` names the field, e.g. ``n``,
``temperature``, ``top_logprobs``, ``logprobs``, ``max_tokens``, ``prompt``, ``messages``;
``code`` e.g. ``integer_above_max_value``, ``invalid_type``); ``GET``/``PUT`` on the POST
paths: 404 "Invalid URL (GET /v1/chat/completions)". The fault markers below work on these
endpoints too (read from the user messages / the prompts): ``429`` -> 429 ``{"type":
"requests", "code": "rate_limit_exceeded"}`` with a ``retry-after: 2`` header; ``404`` ->
``model_not_found``; ``500``/``503``/``504`` -> ``server_error``; ``400``/``403`` ->
``invalid_request_error``; ``CODExN`` and ``latency=MS`` as below; ``block`` and
``block=REASON`` -> 400 ``{"param": "prompt", "code": "content_filter"}``; ``safety`` and
``finish=REASON`` -> every choice has ``finish_reason: "content_filter"`` (chat ``content:
null``, legacy ``text`` = echo or ""; ``finish=STOP``: ``"stop"`` with empty content);
``max_tokens`` (= ``finish=MAX_TOKENS``) -> every choice has ``finish_reason: "length"``, empty
content, and ``usage.completion_tokens_details.reasoning_tokens`` = the budget (``max_tokens``
or 8192); ``reasoning=MODE`` as above.

Fault injection (markers in the prompt text, case-insensitive, removed before answering)
-----------------------------------------------------------------------------------------
``[[emulator:block]]``       prompt blocked: no candidates, ``promptFeedback: {blockReason: "SAFETY", safetyRatings}``
                             (the blocked rating is the first ``safetySettings`` category with a
                             blocking threshold, at that threshold's level -- else
                             HARM_CATEGORY_DANGEROUS_CONTENT, HIGH); usage: prompt tokens only
``[[emulator:block=R]]``     prompt blocked with ``blockReason: R``, any name ``[A-Za-z][A-Za-z0-9_]*``
                             (upper-cased): ``JAILBREAK``, ``PROHIBITED_CONTENT``, ``BLOCKLIST``,
                             ``OTHER``, ... (``SAFETY`` = ``block``). ``MODEL_ARMOR`` is screened
                             before the model, as on Vertex AI (G07): ``promptFeedback:
                             {blockReason, blockReasonMessage: "The prompt violated Prompt Injection
                             and Jailbreak filters."}`` and a usageMetadata without token counts
``[[emulator:safety]]``      = ``finish=SAFETY``: every candidate is ``{content: {}, finishReason:
                             "SAFETY", safetyRatings}`` (G06; the blocked rating as for ``block``)
``[[emulator:finish=R]]``    every candidate is withheld with ``finishReason: R``, any name:
                             ``RECITATION``, ``PROHIBITED_CONTENT``, ``SPII``, ``BLOCKLIST``,
                             ``IMAGE_SAFETY``, ``MALFORMED_FUNCTION_CALL``, ``MODEL_ARMOR``, or an
                             unknown future value (``NEW_REASON_2027``): ``content: {}`` (``STOP``:
                             ``{role: "model"}``), no parts, no ``candidatesTokenCount``; thinking
                             models still report their ``thoughtsTokenCount``
``[[emulator:max_tokens]]``  = ``finish=MAX_TOKENS``: every candidate is ``{content: {role: "model"},
                             finishReason: "MAX_TOKENS"}`` (a thinking model that spent its budget,
                             G04; ``thoughtsTokenCount`` = ``maxOutputTokens`` or 8192, per candidate)
``[[emulator:reasoning=M]]`` OpenAI-compatible endpoints: how the model reasons (``reasoning_content``,
                             ``reasoning``, ``think`` or ``none``); accepted and ignored by Gemini
``[[emulator:429]]``         429 RESOURCE_EXHAUSTED with QuotaFailure, Help and ``RetryInfo {"retryDelay": "2s"}``
``[[emulator:500]]``         500 INTERNAL
``[[emulator:503]]``         503 UNAVAILABLE "The model is overloaded. Please try again later."
                             (also 400, 403, 404, 504)
``[[emulator:503x2]]``       fails the first 2 times this exact (model, request body) is seen, then
                             answers normally (any code, any count: ``429x1``, ``500x3``...)
``[[emulator:latency=200]]`` sleep 200 ms before answering (adds to the server-wide ``latency_ms``)
``[[emulator:boxed]]``       the final answer line is written ``The final answer is $\\boxed{26}$.``, as a model told
                             to put its final answer within ``\\boxed{}`` writes it (any endpoint)
``[[emulator:echo_key]]``    every answer text starts with the line ``The API key of this request is <key>``
                             (or ``This request carried no API key.``), followed by the usual answer

An unknown marker gives 400 naming it. Markers are read from the user turns only. With
``$alt=json;enum-encoding=int`` a finish or block reason prints as the Developer API's number
(``PROHIBITED_CONTENT``: 8 as a finishReason, 4 as a blockReason); a name without one
(``MODEL_ARMOR``, ``JAILBREAK``, an unknown value) stays a string.

``echo_key`` exists **only** to test that a recorder refuses to write (or redacts) a cassette
whose response contains a secret: it copies the credential the request carried into the
response body. The key is the one the endpoint authenticates with: on the Developer API the
``x-goog-api-key`` header, else the ``?key=`` query parameter; on Vertex AI the bearer token,
else (express mode) the API key; on the OpenAI-compatible endpoints the ``Authorization:
Bearer`` token. It works on every generation endpoint (Gemini candidate text, chat
``content``, completion ``text``). The line is part of the answer text for token counts,
logprobs, stop sequences and ``max_tokens``; it is put before the (possibly padded, see
``pad_to_tokens``) answer and does not count towards the padding target.

Server-wide knobs
-----------------
Keyword arguments of ``Emulator(...)`` (also settable later as attributes, e.g.
``emu.fail_rate = 0.1``) and flags of ``python -m rlhf_eval.emulator``. "Generation requests"
below are the POSTs to ``...:generateContent`` (Developer API and Vertex AI),
``/v1/chat/completions`` and ``/v1/completions``; ``GET /v1/models``, unknown paths and
``:streamGenerateContent`` are never rate-limited nor failed. For a Gemini request both knobs
are checked after the route and the authentication (a missing key is still the 400/401) and
before anything else; for an OpenAI-style request, before the body is validated. The rate
limit is checked first: a request it refuses is not counted as an attempt by ``fail_rate``.

* ``fail_rate`` / ``--fail-rate P`` (default 0; in [0, 1]), ``fail_status`` /
  ``--fail-status CODE`` (default 503; one of 400, 403, 404, 429, 500, 503, 504) and
  ``fault_seed`` / ``--fault-seed SEED`` (default 0; hashed as text, so ``7`` and ``"7"`` are
  the same seed): a fraction P of generation requests fail
  with that status and exactly the body the ``[[emulator:CODE]]`` marker gives (e.g. 503:
  ``{"error": {"code": 503, "message": "The model is overloaded. Please try again later.",
  "status": "UNAVAILABLE"}}``; OpenAI-style: ``{"error": {"message": "The engine is currently
  overloaded, please try again later", "type": "server_error", "param": null, "code": null}}``).
  The decision is deterministic: request number ``a`` (0-based) with a given path and
  canonical body (keys sorted; Gemini keys camelCased first) fails iff
  ``blake2b("fail", fault_seed, path, canonical body, a) / 2**64 < P`` (:func:`stable_hash`
  of those parts). So the same sequence of requests meets the same failures in every run, a
  retry of a failed request is a fresh draw (it succeeds with probability 1 - P), and over
  many requests the realised fraction is about P. The attempt counters restart with
  :meth:`Emulator.reset`. A failure consumes no implicit seed.
* ``rate_limit_rpm`` / ``--rate-limit-rpm RPM`` (default 0 = no limit) and
  ``rate_limit_burst`` / ``--rate-limit-burst N`` (default ``max(1, RPM / 60)``): one **token
  bucket** for the whole server (all endpoints and models together), holding at most N
  tokens, full at the start, refilled **continuously** at RPM/60 tokens per second. Each
  generation request takes a token; with less than one left it is refused (and takes
  nothing). This is not a sliding 60-second window: a real per-minute quota would admit RPM
  requests at once and then nothing for the rest of the minute, while the bucket paces them
  evenly, so a benchmark sees a steady RPM/60 requests per second after the first N (e.g.
  ``--rate-limit-rpm 600``: 10 at once, then 10 per second). The wait
  ``w = (1 - tokens) / (RPM / 60)`` until a token is available is rounded up to whole
  milliseconds (``ms``). Refused Gemini requests get the real 429 body::

      {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
        "message": "You exceeded your current quota, please check your plan and billing details.
                    For more information on this error, head to:
                    https://ai.google.dev/gemini-api/docs/rate-limits.\\n* Quota exceeded for
                    metric: generativelanguage.googleapis.com/generate_content_free_tier_requests,
                    limit: <RPM>, model: <model>\\nPlease retry in 0.083s.",   (one line)
        "details": [
          {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
            "quotaDimensions": {"location": "global", "model": "<model>"}, "quotaValue": "<RPM>"}]},
          {"@type": "type.googleapis.com/google.rpc.Help", "links": [{
            "description": "Learn more about Gemini API quotas",
            "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
          {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.083s"}]}}

  ``retryDelay`` is a ``google.protobuf.Duration`` in its JSON form: whole seconds print as
  ``"2s"``, others with 3 fractional digits (``"0.400s"``, ``"1.250s"``), as proto3 JSON
  prints a millisecond duration. (Real Gemini usually sends whole seconds there, but any
  Duration string is valid: a client should parse it as a float.) ``<RPM>`` prints without a
  fractional part when it is whole (``"600"``). Refused OpenAI-style requests get 429
  ``{"error": {"message": "Rate limit reached for <model> in organization org-emulator on
  requests per min (RPM): Limit <RPM>, Used <RPM>, Requested 1. Please try again in 83ms.",
  "type": "requests", "param": null, "code": "rate_limit_exceeded"}}`` (the llama.cpp shape
  for ``llama-cpp*`` models) with the headers ``retry-after`` (whole seconds, rounded up, as
  OpenAI sends it), ``retry-after-ms`` (the milliseconds, which the openai SDK reads first),
  ``x-ratelimit-limit-requests: <RPM>``, ``x-ratelimit-remaining-requests: 0`` and
  ``x-ratelimit-reset-requests`` (``"83ms"``, ``"1.5s"``). :meth:`Emulator.reset` and setting
  ``emu.rate_limit_rpm`` or ``emu.rate_limit_burst`` refill the bucket.
* ``pad_to_tokens`` / ``--pad-to-tokens N`` (default 0 = off): realistic long traces for
  benchmarks. A chosen answer (bank solution or synthesised) with fewer than N tokens whose
  last line is a final answer line (``A: ...`` or ``The answer is ...``) is lengthened to
  about N tokens by inserting lines before that last line, one at a time until the count
  (each line's tokens plus one for its line break) reaches N, so it overshoots by less than
  one line: first ``Let me double-check the reasoning step by step.``, then, cyclically, the
  answer's own reasoning lines (all but the last) followed by those of the question's other
  bank solutions (the next ones in bank order, each without its last line) -- or, for a
  synthesised answer, the other reasoning templates worded for the same option or number.
  Lines saying "answer is", starting ``A:`` or containing ``####`` are never inserted. The
  final answer line, and so the answer's correctness, is unchanged; the padding depends only
  on the chosen answer (not on the seed), so greedy decoding and the seed rules are as
  before. Padding comes before stop sequences and ``max_tokens``/``maxOutputTokens``, and
  usage and logprobs are computed on the padded text as always (the scorer still agrees with
  the sampler). A bank solution without a final answer line (a few run-away ones) is not
  padded.
* ``latency_ms`` / ``--latency-ms MS``: a delay before every response, slept in the
  request's own thread, so parallel requests wait concurrently (20 parallel requests with
  ``latency_ms=200`` take about 0.2 s in all, not 4 s).
* ``emu.stats``: a snapshot (a new dict, thread-safe) of the counters since the start or the
  last :meth:`Emulator.reset`: ``requests`` (every HTTP request answered), ``failures_injected``
  (by ``fail_rate``), ``rate_limited`` (429s of ``rate_limit_rpm``), ``marker_errors``
  (errors asked for by ``[[emulator:CODE]]`` markers) and ``by_status`` (``{status: count}``
  over all requests, ints as keys).

Server
------
``http.server.ThreadingHTTPServer`` with HTTP/1.1 keep-alive (one thread per connection,
listen backlog 128); thread-safe (the bank is read-only, the request log, the ``xN``
counters, the implicit-seed and ``fail_rate`` attempt counters, the stats and the rate-limit
bucket are behind locks); silent (no request log on stderr); the bank is loaded once per
process (~0.2 s) and each solution is pre-tokenised with its logps (and per-step logprob JSON
is cached); a model name's tempered model is built on its first request (~3 ms; the last 32
temperatures are kept) and prices each bank solution the first time it is drawn. So a typical request costs
well under a millisecond of CPU in the server (an 8-choice chat completion with
``top_logprobs: 20`` -- 2.5 MB of JSON -- about 3 ms); client-side parsing of large logprob
responses by the SDKs usually costs more than that.
"""
from __future__ import annotations

import threading
from typing import Any

from .bank import Bank, load_bank
from .openai_api import openai_quirks, openai_server, reasoning_style
from .server import EmulatorHTTPServer, EmulatorState, is_thinking_model, model_family

__all__ = ["Emulator", "is_thinking_model", "load_bank", "model_family", "openai_quirks", "openai_server",
           "reasoning_style"]


class Emulator:
    """The emulator server, run in a background thread.

    ``Emulator(port=0)`` binds at construction (so ``port``/``base_url`` are known at once)
    and serves from :meth:`start` (or ``with``) until :meth:`stop`.
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        latency_ms: float = 0,
        *,
        bank: Bank | None = None,
        record_requests: bool = True,
        fail_rate: float = 0.0,
        fail_status: int = 503,
        fault_seed: int | str = 0,
        rate_limit_rpm: float = 0.0,
        rate_limit_burst: float | None = None,
        pad_to_tokens: int = 0,
    ):
        self.state = EmulatorState(
            bank=bank, latency_ms=latency_ms, record_requests=record_requests,
            fail_rate=fail_rate, fail_status=fail_status, fault_seed=fault_seed,
            rate_limit_rpm=rate_limit_rpm, rate_limit_burst=rate_limit_burst, pad_to_tokens=pad_to_tokens,
        )
        self._server = EmulatorHTTPServer((host, port), self.state)
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Requests received so far: dicts with method, path, query (the ``key`` value
        redacted), model, body (parsed JSON, as sent) and status (the HTTP status answered)."""
        return self.state.requests

    @property
    def latency_ms(self) -> float:
        return self.state.latency_ms

    @latency_ms.setter
    def latency_ms(self, value: float) -> None:
        self.state.latency_ms = float(value)

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the server's counters (see "Server-wide knobs"): ``requests``,
        ``failures_injected``, ``rate_limited``, ``marker_errors``, ``by_status``."""
        return self.state.stats()

    # server-wide knobs (settable while serving; see "Server-wide knobs")
    @property
    def fail_rate(self) -> float:
        return self.state.fail_rate

    @fail_rate.setter
    def fail_rate(self, value: float) -> None:
        self.state.configure(fail_rate=value)

    @property
    def fail_status(self) -> int:
        return self.state.fail_status

    @fail_status.setter
    def fail_status(self, value: int) -> None:
        self.state.configure(fail_status=value)

    @property
    def fault_seed(self) -> int | str:
        return self.state.fault_seed

    @fault_seed.setter
    def fault_seed(self, value: int | str) -> None:
        self.state.configure(fault_seed=value)

    @property
    def rate_limit_rpm(self) -> float:
        return self.state.rate_limit_rpm

    @rate_limit_rpm.setter
    def rate_limit_rpm(self, value: float) -> None:
        self.state.configure(rate_limit_rpm=value)

    @property
    def rate_limit_burst(self) -> float | None:
        return self.state.rate_limit_burst

    @rate_limit_burst.setter
    def rate_limit_burst(self, value: float | None) -> None:
        self.state.configure(rate_limit_burst=value)

    @property
    def pad_to_tokens(self) -> int:
        return self.state.pad_to_tokens

    @pad_to_tokens.setter
    def pad_to_tokens(self, value: int) -> None:
        self.state.configure(pad_to_tokens=value)

    def reset(self) -> None:
        """Forget recorded requests, the ``[[emulator:CODExN]]`` counters, the implicit-seed
        counters (so requests without a seed get seeds 0, 1, 2, ... again), the ``fail_rate``
        attempt counters and :attr:`stats`; refill the rate-limit bucket."""
        self.state.reset()

    def start(self) -> "Emulator":
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                name=f"rlhf-eval-emulator:{self.port}", daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (used by ``python -m``)."""
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:
            self._server.server_close()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    close = stop

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Emulator({self.base_url})"
