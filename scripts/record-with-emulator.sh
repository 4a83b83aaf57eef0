#!/usr/bin/env bash
# Record cassettes through the local emulator (Gemini and OpenAI-compatible), as the shipped ones were.
# Usage: scripts/record-with-emulator.sh [pytest args...]   default: suites/ --rlhf-record-mode=once
#        e.g. scripts/record-with-emulator.sh suites/ --rlhf-record-mode=rewrite
# Uses the repository's .venv when there is one (or $PYTHON), so no virtualenv needs activating.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
[ -z "${PYTHON:-}" ] && [ -x "$root/.venv/bin/python" ] && python="$root/.venv/bin/python"
[ $# -eq 0 ] && set -- suites/ --rlhf-record-mode=once
port=${RLHF_EVAL_EMULATOR_PORT:-8765}
"$python" -m rlhf_eval.emulator --port "$port" &
emulator=$!
trap 'kill $emulator 2>/dev/null || true' EXIT
up=
for _ in $(seq 100); do
  "$python" -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && { up=1; break; }
  kill -0 $emulator 2>/dev/null || break
  sleep 0.1
done
[ -n "$up" ] || { echo "the emulator did not start on port $port (set RLHF_EVAL_EMULATOR_PORT to use another)" >&2; exit 1; }
export RLHF_EVAL_GEMINI_BASE_URL="http://127.0.0.1:$port"
export OPENAI_BASE_URL="http://127.0.0.1:$port/v1"   # the OpenAI-compatible side (policy and reference scorer)
export GEMINI_API_KEY="emulator-key"   # the emulator accepts any key; it is filtered out of cassettes
"$python" -m pytest "$@"
