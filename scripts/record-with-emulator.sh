#!/usr/bin/env bash
# Re-record cassettes through the local emulator (Gemini and OpenAI-compatible) (how the shipped cassettes were made).
# Usage: scripts/record-with-emulator.sh [pytest args...]   e.g. suites/ --rlhf-record-mode=rewrite
set -euo pipefail
port=${RLHF_EVAL_EMULATOR_PORT:-8765}
python -m rlhf_eval.emulator --port "$port" &
emulator=$!
trap 'kill $emulator' EXIT
for _ in $(seq 50); do
  python -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
  sleep 0.1
done
export RLHF_EVAL_GEMINI_BASE_URL="http://127.0.0.1:$port"
export OPENAI_BASE_URL="http://127.0.0.1:$port/v1"   # the OpenAI-compatible side (policy and reference scorer)
export GEMINI_API_KEY="emulator-key"   # the emulator accepts any key; it is filtered out of cassettes
pytest "${@:-suites/ --rlhf-record-mode=once}"
