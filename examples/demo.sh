#!/usr/bin/env bash
# `make demo`: the main job, end to end, offline, on an embedded single-machine cluster (sentiment_devcluster):
# the API server, the real operator process, a node agent that runs the pods as local processes and a Service
# proxy. The commands are the ones a user types against a real cluster:
#   1. start the cluster (with Prometheus as an add-on); 2. kubectl apply the project and lab SentimentModels;
#   3. kubectl get sentimentmodels; 4. the example request to /project and /lab through their Services and the
#   gateway; 5. the repeat served from the managed Redis; 6. kubectl patch, status following the rollout;
#   7. an invalid SentimentModel -> InvalidSpec; 8. progressive delivery: a canary analysed in Prometheus,
#   promoted, then one answering differently, rolled back; 9. delete everything, gone; 10. stop the cluster
#   (also on error or Ctrl-C): no process is left.
#
# Environment: VENV (default .venv), DEMO_DIR (default .cache/demo; the generated model is reused between
# runs), READY_TIMEOUT seconds per wait (default 180).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${VENV:-.venv}"
export PATH="$PWD/$VENV/bin:$PATH"
DEMO_DIR="${DEMO_DIR:-.cache/demo}"
READY_TIMEOUT="${READY_TIMEOUT:-180}"
# Offline: nothing may reach a model hub.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_DISABLE_PROGRESS_BARS=1

for tool in python kubectl sentiment-operator sentiment-devmodel sentiment-serve; do
  command -v "$tool" >/dev/null || { echo "demo: $tool not found in $VENV; run 'make install'" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "demo: curl is required" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "demo: redis-server is required (make install)" >&2; exit 1; }
mkdir -p "$DEMO_DIR"
DEMO_DIR="$(cd "$DEMO_DIR" && pwd)"
STATE="$DEMO_DIR/cluster"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
# Show a command as a user would type it, then run it.
run() { printf '\033[2m$ %s\033[0m\n' "$*"; eval "$@"; }

# --- the model -------------------------------------------------------------------------------------------------
MODEL_DIR="$DEMO_DIR/model"
if [[ -f "$MODEL_DIR/MODEL_ID" && -f "$MODEL_DIR/config.json" ]]; then
  step "Reusing the generated model in $MODEL_DIR (it stands in for the one baked into the inference image)"
else
  step "Generating a small trained model into $MODEL_DIR (it stands in for the one baked into the image)"
  rm -rf "$MODEL_DIR"
  sentiment-devmodel --out "$MODEL_DIR" --train
fi

# --- 1. the cluster --------------------------------------------------------------------------------------------
step "Starting the embedded cluster: API server, sentiment-operator, node agent, Service proxy, gateway, Prometheus"
rm -rf "$STATE"
LOG="$DEMO_DIR/cluster.log"
# Its own session: Ctrl-C reaches this script, which stops the cluster in order (pods, operator, API server).
setsid python -m sentiment_devcluster up --state-dir "$STATE" --model-dir "$MODEL_DIR" --prometheus >"$LOG" 2>&1 &
CLUSTER_PID=$!
echo "cluster pid $CLUSTER_PID (log: $LOG)"

TRAFFIC_PID=""
stop_cluster() {
  if [[ -n "$TRAFFIC_PID" ]]; then kill "$TRAFFIC_PID" 2>/dev/null || true; fi
  if kill -0 "$CLUSTER_PID" 2>/dev/null; then
    kill -TERM "$CLUSTER_PID" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$CLUSTER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$CLUSTER_PID" 2>/dev/null || true   # its pods die with it (PR_SET_PDEATHSIG)
  fi
  wait "$CLUSTER_PID" 2>/dev/null || true
}
trap stop_cluster EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

deadline=$((SECONDS + 90))
until [[ -f "$STATE/cluster.json" ]]; do
  if ! kill -0 "$CLUSTER_PID" 2>/dev/null || ((SECONDS >= deadline)); then
    echo "demo: the cluster did not start; last log lines:" >&2
    tail -n 30 "$LOG" >&2
    exit 1
  fi
  sleep 0.2
done
export KUBECONFIG="$STATE/kubeconfig"
grep -m1 'API server' "$LOG" | sed 's/^\[devcluster\] //'
grep -m1 'Gateway' "$LOG" | sed 's/^\[devcluster\] //'
grep -m1 'Prometheus http' "$LOG" | sed 's/^\[devcluster\] //'
cluster_info() { python -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$STATE/cluster.json" "$1"; }
GATEWAY="$(cluster_info gateway)"
run kubectl get namespaces

fail() {
  echo "demo: $*; last cluster log lines:" >&2
  tail -n 30 "$LOG" >&2
  exit 1
}

# --- 2. apply ----------------------------------------------------------------------------------------------
step "Applying the example SentimentModels"
run "kubectl create namespace sentiment --dry-run=client -o yaml | kubectl apply -f -"
run kubectl apply -f examples/project.yaml -f examples/lab.yaml

# --- 3. status -------------------------------------------------------------------------------------------------
step "Waiting until both are Ready (the operator reconciles, the node agent starts Redis and the servers)"
run kubectl -n sentiment wait sm/project sm/lab --for=condition=Ready --timeout="${READY_TIMEOUT}s" \
  || fail "the SentimentModels did not become Ready"
run kubectl -n sentiment get sentimentmodels
run kubectl -n sentiment get deployments,services
run kubectl -n sentiment get pods -o wide

svc() { kubectl -n sentiment get service "$1" -o jsonpath='{.spec.clusterIP}'; }
REQUEST='{"text": ["I love you!", "I hate you!", "I am a k8s Cluster!"]}'
summarize() {
  python - "$REQUEST" "$1" <<'EOF'
import json, sys
texts = json.loads(sys.argv[1])["text"]
predictions = json.loads(sys.argv[2])["predictions"]
assert len(predictions) == len(texts), "one prediction per text"
for text, scores in zip(texts, predictions):
    best = max(scores, key=lambda s: s["score"])
    print(f"  {text!r:24} -> {best['label']:8} {best['score']:.3f}")
EOF
}

# --- 4. predictions through the Services ----------------------------------------------------------------------
for name in project lab; do
  step "The example request to /$name through Service sentiment/$name ($name.sentiment.svc.cluster.local)"
  URL="http://$(svc "$name"):8000/$name/predict"
  echo "\$ curl -s -X POST $URL -H 'Content-Type: application/json' -d '$REQUEST'"
  ANSWER=$(curl -fsS --max-time 30 -X POST "$URL" -H 'Content-Type: application/json' -d "$REQUEST") \
    || fail "POST $URL failed"
  echo "$ANSWER"
  summarize "$ANSWER"
done

# --- 5. the cache ----------------------------------------------------------------------------------------------
step "The same request again: answered from the operator's managed Redis (project-redis)"
BASE="http://$(svc project):8000"
run "curl -s -o /dev/null -w 'HTTP %{http_code}\n' -X POST $BASE/project/predict -H 'Content-Type: application/json' -d '$REQUEST'"
run "curl -s $BASE/metrics | grep -E '^sentiment_cache_(hits|misses)_total'"

# --- 6. a spec change rolls out --------------------------------------------------------------------------------
step "Changing the spec: project to int8; the Deployment rolls (new pod ready before the old one stops)"
run kubectl -n sentiment patch sentimentmodel project --type merge -p "'{\"spec\":{\"model\":{\"precision\":\"int8\"}}}'"
sleep 1
run kubectl -n sentiment get sentimentmodel project -o wide
run kubectl -n sentiment rollout status deployment/project --timeout="${READY_TIMEOUT}s" \
  || fail "the rollout did not finish"
run kubectl -n sentiment get pods -l app.kubernetes.io/instance=project
run kubectl -n sentiment wait sm/project --for=condition=Ready --timeout="${READY_TIMEOUT}s" || fail "not Ready"
run kubectl -n sentiment get sentimentmodel project -o wide
run "curl -s $BASE/project/model | python -c 'import json,sys; m=json.load(sys.stdin); print(\"precision:\", m[\"precision\"])'"

# --- 7. an invalid spec ----------------------------------------------------------------------------------------
step "An invalid SentimentModel (requests above limits: only the operator can check that) -> InvalidSpec"
run "kubectl -n sentiment apply -f - <<'EOF'
apiVersion: serving.sentiment.dev/v1alpha1
kind: SentimentModel
metadata:
  name: broken
spec:
  resources:
    requests: {cpu: '4'}
    limits: {cpu: '2'}
EOF"
run "kubectl -n sentiment wait sm/broken --for=jsonpath='{.status.conditions[?(@.type==\"Ready\")].reason}'=InvalidSpec --timeout=${READY_TIMEOUT}s" \
  || fail "no InvalidSpec"
run kubectl -n sentiment get sentimentmodels -o wide
run "kubectl -n sentiment get sm broken -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].message}'; echo"

# --- 8. progressive delivery -------------------------------------------------------------------------------------
step "Progressive delivery: a SentimentModel whose model changes roll out as analysed canaries"
# The node mounts a PersistentVolumeClaim from $STATE/claims/<namespace>/<claim>: put the model versions there.
CLAIMS="$STATE/claims/sentiment"
mkdir -p "$CLAIMS"
cp -r "$MODEL_DIR" "$CLAIMS/reviews-v2"             # the same weights, released again as v2: a good canary
run kubectl apply -f examples/rollout-demo.yaml
run kubectl -n sentiment wait sm/reviews --for=condition=Ready --timeout="${READY_TIMEOUT}s" || fail "reviews not Ready"
echo "Traffic for the rest of the demo: python -m sentiment_devcluster traffic to $GATEWAY/reviews/predict"
echo "(the gateway stand-in splits and mirrors it by the weights the operator writes into the VirtualService)"
python -m sentiment_devcluster traffic --url "$GATEWAY/reviews/predict" --rate 40 --seconds 600 >/dev/null 2>&1 &
TRAFFIC_PID=$!
stop_traffic() { kill "$TRAFFIC_PID" 2>/dev/null || true; wait "$TRAFFIC_PID" 2>/dev/null || true; }

# Print `kubectl get sm NAME` (its Rollout column) whenever it changes, until the rollout has left PHASE (the
# change was picked up) and come to it again.
watch_rollout() {
  local name="$1" phase="$2" last="" line now left=0 deadline=$((SECONDS + READY_TIMEOUT))
  echo "\$ kubectl -n sentiment get sm $name --watch   (until its rollout is $phase)"
  kubectl -n sentiment get sm "$name" | head -1
  while ((SECONDS < deadline)); do
    # The phase first: the line read after it shows that phase or a later one.
    now="$(kubectl -n sentiment get sm "$name" -o jsonpath='{.status.rollout.phase}')"
    line=$(kubectl -n sentiment get sm "$name" --no-headers 2>/dev/null || true)
    [[ "$line" != "$last" ]] && { echo "$line"; last="$line"; }
    [[ "$now" != "$phase" ]] && left=1
    ((left)) && [[ "$now" == "$phase" ]] && return 0
    sleep 1
  done
  return 1
}
analysis() {
  python - "$(kubectl -n sentiment get sm reviews -o json)" <<'EOF'
import json, sys
analysis = json.loads(sys.argv[1])["status"]["rollout"].get("lastAnalysis") or {}
print(f"  last analysis: {analysis.get('verdict')}, predict requests per side {analysis.get('samples')}")
for check in analysis.get("checks", []):
    unit = check["unit"]
    stable = "" if check.get("stable") is None else f", stable {check['stable']:.3g}{unit}"
    canary = f"{check.get('canary', 0):.3g}{unit}"
    print(f"    {check['name']:11} canary {canary}{stable} (limit {check['threshold']:g}{unit})")
EOF
}

step "A new model version (reviews-v2): mirrored, then 25 % and 50 % of the traffic, each step analysed"
run kubectl -n sentiment patch sm reviews --type merge -p "'{\"spec\":{\"model\":{\"id\":\"reviews-v2\",\"source\":{\"pvc\":{\"claimName\":\"reviews-v2\"}}}}}'"
watch_rollout reviews Stable || { stop_traffic; fail "the good canary was not promoted"; }
analysis
run "kubectl -n sentiment get sm reviews -o jsonpath='{.status.conditions[?(@.type==\"Rollout\")].message}'; echo"

step "A model that answers differently (trained with the labels swapped): rolled back on the label check"
sentiment-devmodel --out "$CLAIMS/reviews-v3" --train --flip-labels 2>/dev/null
run kubectl -n sentiment patch sm reviews --type merge -p "'{\"spec\":{\"model\":{\"id\":\"reviews-v3\",\"source\":{\"pvc\":{\"claimName\":\"reviews-v3\"}}}}}'"
watch_rollout reviews RolledBack || { stop_traffic; fail "the bad canary was not rolled back"; }
stop_traffic
analysis
run "kubectl -n sentiment get sm reviews -o jsonpath='{.status.conditions[?(@.type==\"Rollout\")].reason}: {.status.conditions[?(@.type==\"Rollout\")].message}'; echo"
run kubectl -n sentiment get deployments -l app.kubernetes.io/instance=reviews
echo "the stable still runs reviews-v2; the spec still says reviews-v3 (a new change starts a new rollout)"
PROMETHEUS="$(cluster_info prometheus)"
echo "The operator's own metrics, as Prometheus scraped them (sentiment_operator_rollouts_total by outcome):"
for _ in $(seq 1 20); do   # a scrape a second: wait for the last outcome to arrive
  OUTCOMES=$(curl -s "$PROMETHEUS/api/v1/query" --data-urlencode \
    'query=sentiment_operator_rollouts_total{namespace="sentiment",sentiment_model="reviews"} > 0')
  [[ "$OUTCOMES" == *rolled_back* ]] && break
  sleep 0.5
done
python - "$OUTCOMES" <<'EOF'
import json, sys
for sample in json.loads(sys.argv[1])["data"]["result"]:
    print("  rollouts_total", sample["metric"]["outcome"], sample["value"][1])
EOF

# --- 9. delete -------------------------------------------------------------------------------------------------
step "Deleting everything: the children go with their owners (garbage collection), the pods stop"
run kubectl -n sentiment delete sentimentmodel project lab broken reviews --wait --timeout="${READY_TIMEOUT}s"
run kubectl -n sentiment get sentimentmodels,deployments,services,secrets
deadline=$((SECONDS + 60))
until python - "$STATE/pods.json" <<'EOF'
import json, sys
sys.exit(0 if json.load(open(sys.argv[1], encoding="utf-8")) == [] else 1)
EOF
do ((SECONDS < deadline)) || fail "pods still running after the delete"; sleep 0.5; done
echo "the node agent runs no pod any more"

# --- 10. stop --------------------------------------------------------------------------------------------------
step "Stopping the cluster"
stop_cluster
trap - EXIT
echo "demo finished (logs: $LOG, $STATE/operator.log, $STATE/pods/)"
