"""A local server speaking TRL's vLLM-server contract, backed by the
tiny random GPT-2 of tests/tiny_lm.py (its tokens and logprobs are the model's, sampled for real).

The server below is OUR PICTURE of that contract, not vLLM. In TRL 1.16 `trl vllm-serve`
(trl/scripts/vllm_serve.py) no longer has its own `/generate/` endpoint: it execs vLLM's
OpenAI-compatible server (`vllm serve`) with `--logprobs-mode processed_logprobs`, and TRL's client
(trl/generation/vllm_client.py, `VLLMClient.generate` / `.chat`) asks it `GET /v1/models`,
`POST /v1/completions` and `POST /v1/chat/completions` with `n`, `seed` (through
`generation_kwargs`), `logprobs` and `return_token_ids`, reading each choice's `token_ids`,
`prompt_token_ids` (chat: the response's) and `logprobs` (`tokens`/`token_logprobs`, or chat's
`content`). So the server implements those three as vLLM does: completion i of an n > 1 request
seeded `seed + i` (vLLM V1, vllm/v1/engine/parallel_sampling.py), the stop token kept in
`token_ids` and `logprobs` and left out of the text, other special tokens left out unless
`skip_special_tokens: false`, logprobs after temperature (processed)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class TRLVLLMServer:
    """The contract above over `model`/`tokenizer`, on 127.0.0.1 at a free port; `requests` keeps
    each POST's (path, JSON body)."""

    def __init__(self, model, tokenizer, name: str):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.requests: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": server.name, "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                server.requests.append((self.path, body))
                if body.get("model") != server.name:
                    return self._send(404, {"error": {"message": f"The model `{body.get('model')}` does not exist."}})
                if self.path == "/v1/completions":
                    return self._send(200, server.completions(body))
                if self.path == "/v1/chat/completions":
                    return self._send(200, server.chat(body))
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join()

    # -- vLLM's answers ---------------------------------------------------------------------------

    def completions(self, body):
        prompt_ids = self.tokenizer(body["prompt"])["input_ids"]  # the server adds the special tokens
        choices = []
        for i, (ids, lps, finish) in enumerate(self._sample(prompt_ids, body)):
            tokens = [self.tokenizer.decode([t]) for t in ids]
            offsets, at = [], 0
            for t in tokens:
                offsets.append(at)
                at += len(t)
            choices.append({"index": i, "text": self._text(ids, body), "finish_reason": finish, "stop_reason": None,
                            "token_ids": ids, "prompt_token_ids": prompt_ids,
                            "logprobs": {"tokens": tokens, "token_logprobs": lps, "top_logprobs": [{}] * len(ids),
                                         "text_offset": offsets}})
        return {"id": "cmpl-1", "object": "text_completion", "model": self.name, "choices": choices,
                "usage": {"prompt_tokens": len(prompt_ids),
                          "completion_tokens": sum(len(c["token_ids"]) for c in choices)}}

    def chat(self, body):
        text = self.tokenizer.apply_chat_template(body["messages"], tokenize=False, add_generation_prompt=True)
        prompt_ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]  # the template is the prompt
        choices = []
        for i, (ids, lps, finish) in enumerate(self._sample(prompt_ids, body)):
            content = [{"token": self.tokenizer.decode([t]), "logprob": lp, "bytes": None, "top_logprobs": []}
                       for t, lp in zip(ids, lps)]
            choices.append({"index": i, "message": {"role": "assistant", "content": self._text(ids, body)},
                            "logprobs": {"content": content}, "finish_reason": finish, "stop_reason": None,
                            "token_ids": ids})
        return {"id": "chatcmpl-1", "object": "chat.completion", "model": self.name, "choices": choices,
                "prompt_token_ids": prompt_ids}

    def _text(self, ids, body):
        """vLLM's text: the stop token never, other special tokens unless `skip_special_tokens` (default true)."""
        if ids and ids[-1] == self.tokenizer.eos_token_id:
            ids = ids[:-1]
        return self.tokenizer.decode(ids, skip_special_tokens=body.get("skip_special_tokens", True))

    def _sample(self, prompt_ids, body):
        import torch

        eos, temperature = self.tokenizer.eos_token_id, body.get("temperature", 1.0)
        with self._lock, torch.inference_mode():
            for i in range(body.get("n", 1)):
                generator = torch.Generator().manual_seed(body["seed"] + i)  # vLLM V1: child i, seed + i
                context, ids, lps = list(prompt_ids), [], []
                while len(ids) < body["max_tokens"]:
                    logits = self.model(torch.tensor([context])).logits[0, -1].float() / temperature
                    token = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
                    ids.append(token)
                    lps.append(float(torch.log_softmax(logits, -1)[token]))  # processed: after temperature
                    context.append(token)
                    if token == eos:
                        break
                yield ids, lps, "stop" if ids[-1] == eos else "length"
