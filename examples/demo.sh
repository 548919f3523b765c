#!/usr/bin/env bash
# `make demo`: the main job on embedded defaults, offline, no cluster.
#   1. render the example SentimentModels into the manifests the operator would apply;
#   2. generate a small trained DistilBERT sentiment model locally (nothing is downloaded);
#   3. serve it with sentiment-serve on 127.0.0.1 at /project with the in-process cache;
#   4. send the seeds' example request and print the answer; 5. stop the server (also on error or Ctrl-C).
#
# Environment: VENV (default .venv), DEMO_DIR (default .cache/demo; the model is reused between runs),
# DEMO_PORT (default: 8000 if free, else any free port), READY_TIMEOUT seconds (default 180).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${VENV:-.venv}"
export PATH="$PWD/$VENV/bin:$PATH"
DEMO_DIR="${DEMO_DIR:-.cache/demo}"
READY_TIMEOUT="${READY_TIMEOUT:-180}"
PREFIX=/project
# Offline: nothing may reach a model hub, and the cache is the in-process one.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_DISABLE_PROGRESS_BARS=1
unset SENTIMENT_REDIS_URL SENTIMENT_REDIS_PASSWORD

for tool in python sentiment-operator sentiment-devmodel sentiment-serve; do
  command -v "$tool" >/dev/null || { echo "demo: $tool not found in $VENV; run 'make install'" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "demo: curl is required" >&2; exit 1; }
mkdir -p "$DEMO_DIR"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

# --- 1. render -------------------------------------------------------------------------------------------------
step "Rendering the example SentimentModels (sentiment-operator render)"
examples=(examples/*.yaml)
render_args=()
for f in "${examples[@]}"; do render_args+=(-f "$f"); done
sentiment-operator render "${render_args[@]}" > "$DEMO_DIR/rendered.yaml"
python - "$DEMO_DIR/rendered.yaml" "${#examples[@]}" <<'EOF'
import collections, sys, yaml
objects = [o for o in yaml.safe_load_all(open(sys.argv[1], encoding="utf-8")) if o]
kinds = collections.Counter(o["kind"] for o in objects)
print(f"{len(objects)} objects from {sys.argv[2]} SentimentModels -> {sys.argv[1]}")
print("  " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
EOF

# --- 2. model --------------------------------------------------------------------------------------------------
MODEL_DIR="$DEMO_DIR/model"
if [[ -f "$MODEL_DIR/MODEL_ID" && -f "$MODEL_DIR/config.json" ]]; then
  step "Reusing the generated model in $MODEL_DIR"
else
  step "Generating a small trained sentiment model into $MODEL_DIR (sentiment-devmodel --train)"
  rm -rf "$MODEL_DIR"
  sentiment-devmodel --out "$MODEL_DIR" --train
fi

# --- 3. serve --------------------------------------------------------------------------------------------------
PORT="${DEMO_PORT:-}"
if [[ -z "$PORT" ]]; then
  PORT=$(python - <<'EOF'
import socket
with socket.socket() as s:
    try:
        s.bind(("127.0.0.1", 8000))
    except OSError:
        s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
EOF
)
fi
BASE="http://127.0.0.1:$PORT$PREFIX"
LOG="$DEMO_DIR/serve.log"
step "Starting sentiment-serve on 127.0.0.1:$PORT (prefix $PREFIX, in-process cache; log: $LOG)"
sentiment-serve --host 127.0.0.1 --port "$PORT" --model-path "$MODEL_DIR" --prefix "$PREFIX" >"$LOG" 2>&1 &
SERVER_PID=$!
echo "server pid $SERVER_PID"

stop_server() {
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  wait "$SERVER_PID" 2>/dev/null || true
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

deadline=$((SECONDS + READY_TIMEOUT))
until curl -fsS -o /dev/null "$BASE/ready" 2>/dev/null; do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "demo: sentiment-serve exited before becoming ready; last log lines:" >&2
    tail -n 30 "$LOG" >&2
    exit 1
  fi
  if ((SECONDS >= deadline)); then
    echo "demo: $BASE/ready not 200 after ${READY_TIMEOUT}s: $(curl -sS "$BASE/ready" 2>&1 || true)" >&2
    tail -n 30 "$LOG" >&2
    exit 1
  fi
  sleep 0.5
done
echo "ready: $(curl -fsS "$BASE/ready")"

# --- 4. the seeds' request -------------------------------------------------------------------------------------
REQUEST='{"text": ["I love you!", "I hate you!", "I am a k8s Cluster!"]}'
step "POST $BASE/predict"
echo "curl -X POST $BASE/predict -H 'Content-Type: application/json' -d '$REQUEST'"
ANSWER=$(curl -fsS -X POST "$BASE/predict" -H 'Content-Type: application/json' -d "$REQUEST")
echo "$ANSWER"
python - "$REQUEST" "$ANSWER" <<'EOF'
import json, sys
texts = json.loads(sys.argv[1])["text"]
predictions = json.loads(sys.argv[2])["predictions"]
assert len(predictions) == len(texts), "one prediction per text"
for text, scores in zip(texts, predictions):
    best = max(scores, key=lambda s: s["score"])
    print(f"  {text!r:24} -> {best['label']:8} {best['score']:.3f}")
EOF

# --- 5. stop ---------------------------------------------------------------------------------------------------
step "Stopping the server"
stop_server
trap - EXIT
echo "demo finished: the manifests are in $DEMO_DIR/rendered.yaml"
