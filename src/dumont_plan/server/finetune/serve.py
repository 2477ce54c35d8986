"""An OpenAI-compatible server for a base model plus a trained LoRA adapter.

    python -I serve.py --base-model ID_OR_PATH --adapter DIR --host 127.0.0.1 --port P
                       [--model-name NAME]

A standalone script (standard library + torch, transformers, peft; it never imports dumont_plan)
that a fine-tune deploy runs in an instance's sandbox. The base model is loaded offline (the
local Hugging Face cache or a local directory) and the adapter applied with peft. Routes, with
OpenAI's shapes: GET /health, GET /v1/models, POST /v1/completions, POST /v1/chat/completions
(`max_tokens`, `temperature` (0 = greedy), `top_p`, `stop`; no streaming). Chat messages are
rendered as the trainer renders ShareGPT (`### Human: …` / `### Assistant: …`), so the adapter
sees the format it learnt. Bad input is a 400 with OpenAI's error object. SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import uuid
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore", category=FutureWarning)

MAX_TOKENS_LIMIT = 4096
MAX_BODY = 1 << 20
ROLES = {"system": "System", "user": "Human", "assistant": "Assistant"}


def bad(message: str, param: str | None = None, status: int = 400) -> NoReturn:
    """Reject the request as OpenAI does (status, message, the offending parameter).

    A ValueError carrying the three, caught only around request parsing (this standalone
    script cannot import the package's error tree)."""
    raise ValueError(message, param, status)


class Engine:
    """The loaded model; one generation at a time (a CPU model gains nothing from overlap)."""

    def __init__(self, base_model: str, adapter: str, name: str) -> None:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer_source = (
            adapter
            if os.path.exists(os.path.join(adapter, "tokenizer_config.json"))
            else base_model
        )
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
        base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
        self.model: Any = PeftModel.from_pretrained(base, adapter)
        self.model.eval()
        self.name, self.base_model = name, base_model
        self.created = int(time.time())
        self.lock = threading.Lock()
        self.torch = torch

    def generate(self, prompt: str, params: dict[str, Any]) -> dict[str, Any]:
        torch = self.torch
        encoded = self.tokenizer(prompt, return_tensors="pt")
        prompt_tokens = int(encoded["input_ids"].shape[1])
        pad = self.tokenizer.pad_token_id
        eos = self.tokenizer.eos_token_id
        kwargs: dict[str, Any] = {
            "max_new_tokens": params["max_tokens"],
            "pad_token_id": pad if pad is not None else eos,
        }
        if params["temperature"] > 0:
            kwargs.update(do_sample=True, temperature=params["temperature"], top_p=params["top_p"])
        else:
            kwargs.update(do_sample=False)
        with self.lock, torch.no_grad():
            out = self.model.generate(**encoded, **kwargs)
        new = [int(t) for t in out[0, prompt_tokens:]]
        finish = "length"
        if eos is not None and eos in new:
            new, finish = new[: new.index(eos)], "stop"
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        for stop in params["stop"]:
            if stop and stop in text:
                text, finish = text[: text.index(stop)], "stop"
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(new),
            "total_tokens": prompt_tokens + len(new),
        }
        return {"text": text, "finish_reason": finish, "usage": usage}


def sampling(body: dict[str, Any], default_stop: list[str]) -> dict[str, Any]:
    """max_tokens, temperature, top_p and stop from a request body, checked."""
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens", 16))
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        bad("max_tokens must be an integer", "max_tokens")
    if not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        bad(f"max_tokens must be between 1 and {MAX_TOKENS_LIMIT}", "max_tokens")
    values = {}
    for key, default, high in (("temperature", 1.0, 2.0), ("top_p", 1.0, 1.0)):
        value = body.get(key, default)
        value = default if value is None else value
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high:
            bad(f"{key} must be a number between 0 and {high:g}", key)
        values[key] = float(value)
    if values["top_p"] == 0:
        bad("top_p must be greater than 0", "top_p")
    stop = body.get("stop")
    if stop is None:
        stops = []
    elif isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= 4:
        stops = list(stop)
    else:
        bad("stop must be a string or a list of up to 4 strings", "stop")
    if body.get("stream"):
        bad("stream is not supported by this server", "stream")
    if body.get("n", 1) != 1:
        bad("only n=1 is supported", "n")
    return {"max_tokens": max_tokens, **values, "stop": stops + default_stop}


def chat_prompt(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        bad("messages must be a non-empty list", "messages")
    lines = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            bad(f"messages[{index}].role must be system, user or assistant", "messages")
        content = message.get("content")
        if isinstance(content, list):  # OpenAI's content parts: keep the text ones
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if not isinstance(content, str):
            bad(f"messages[{index}].content must be a string", "messages")
        lines.append(f"### {ROLES[message['role']]}: {content}")
    return "\n".join([*lines, "### Assistant:"])


class Handler(BaseHTTPRequestHandler):
    engine: Engine  # set on the class by serve()
    protocol_version = "HTTP/1.1"
    server_version = "dumont-lora-serve/1"

    def log_message(self, format: str, *args: Any) -> None:  # one line per request, stdout
        print(f"{self.address_string()} {format % args!s}", flush=True)

    def answer(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status >= 400:  # the request's body may be unread: don't reuse the connection
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def error(self, status: int, message: str, param: str | None = None) -> None:
        kind = "invalid_request_error" if status < 500 else "server_error"
        code = "model_not_found" if status == 404 and param == "model" else None
        self.answer(
            status, {"error": {"message": message, "type": kind, "param": param, "code": code}}
        )

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        engine = self.engine
        if path == "/health":
            self.answer(200, {"status": "ok", "model": engine.name})
        elif path == "/v1/models":
            model = {
                "id": engine.name,
                "object": "model",
                "created": engine.created,
                "owned_by": "dumont",
                "root": engine.base_model,
            }
            self.answer(200, {"object": "list", "data": [model]})
        elif path.startswith("/v1/models/") and path[len("/v1/models/") :] == engine.name:
            self.answer(200, {"id": engine.name, "object": "model", "owned_by": "dumont"})
        else:
            self.error(404, f"no route GET {path or '/'}")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path not in ("/v1/completions", "/v1/chat/completions"):
            self.error(404, f"no route POST {path}")
            return
        chat = path == "/v1/chat/completions"
        try:
            body = self.read_json()
            model = body.get("model")
            if model is not None and model != self.engine.name:
                bad(
                    f"model {model!r} does not exist; this server has {self.engine.name!r}",
                    "model",
                    404,
                )
            prompt = chat_prompt(body.get("messages")) if chat else completion_prompt(body)
            params = sampling(body, ["\n### "] if chat else [])
        except ValueError as exc:
            message, param, status = exc.args if len(exc.args) == 3 else (str(exc), None, 400)
            self.error(status, message, param)
            return
        try:
            result = self.engine.generate(prompt, params)
        except Exception as exc:  # the model failed: say so, keep serving
            self.error(500, f"generation failed: {type(exc).__name__}: {exc}")
            return
        self.answer(
            200,
            chat_answer(self.engine.name, result)
            if chat
            else completion_answer(self.engine.name, result),
        )

    def read_json(self) -> dict[str, Any]:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            bad("bad Content-Length header")
        if length < 0 or length > MAX_BODY:
            bad(f"the request body is over {MAX_BODY} bytes", status=413)
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            bad("the request body is not valid JSON")
        if not isinstance(body, dict):
            bad("the request body must be a JSON object")
        return body


def completion_prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        bad("prompt must be a string", "prompt")
    return prompt


def completion_answer(model: str, result: dict[str, Any]) -> dict[str, Any]:
    choice = {
        "text": result["text"],
        "index": 0,
        "logprobs": None,
        "finish_reason": result["finish_reason"],
    }
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": result["usage"],
    }


def chat_answer(model: str, result: dict[str, Any]) -> dict[str, Any]:
    message = {"role": "assistant", "content": result["text"].strip()}
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": result["finish_reason"]}],
        "usage": result["usage"],
    }


def _die(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", required=True, help="Hugging Face id or local directory")
    parser.add_argument("--adapter", required=True, help="the trained LoRA adapter's directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model-name", help="the id /v1/models lists (default: the adapter's)")
    args = parser.parse_args(argv[1:])
    if not os.path.isfile(os.path.join(args.adapter, "adapter_config.json")):
        _die(f"{args.adapter} is not a LoRA adapter directory (no adapter_config.json)")
    name = args.model_name or os.path.basename(os.path.normpath(args.adapter))
    print(f"loading {args.base_model} with the adapter {args.adapter}", flush=True)
    try:
        engine = Engine(args.base_model, args.adapter, name)
    except OSError as exc:
        _die(
            f"cannot load the base model {args.base_model} offline ({exc}); put it in the local "
            f"Hugging Face cache (`huggingface-cli download {args.base_model}`) or pass a "
            "local model directory"
        )
    Handler.engine = engine
    try:
        server = ThreadingHTTPServer((args.host, args.port), Handler)
    except OSError as exc:
        _die(f"cannot listen on {args.host}:{args.port}: {exc}")
    server.daemon_threads = True

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"serving {name} on http://{args.host}:{server.server_port}/v1", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
