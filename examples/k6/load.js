// k6 load test of the usual SLA run of a sentiment service: ramp 1 -> 10 virtual users, sustained load, 95% of the
// texts repeated (cache hits), thresholds p(99) < 2 s and zero failed requests.
//
//   k6 run examples/k6/load.js                                              # http://localhost:8000/project
//   k6 run -e BASE_URL=http://sentiment.example.com -e PREFIX=/lab examples/k6/load.js
//   k6 run -e RAMP_UP=2s -e SUSTAIN=5s -e RAMP_DOWN=1s examples/k6/load.js  # a quick smoke run
//
// Environment (all optional):
//   BASE_URL    scheme://host[:port] of the server or gateway            (default http://localhost:8000)
//   PREFIX      path prefix of one SentimentModel, "" for none           (default /project)
//   ENDPOINT    predict | bulk-predict                                   (default predict)
//   VUS         peak virtual users                                       (default 10)
//   RAMP_UP / SUSTAIN / RAMP_DOWN   stage durations                       (default 30s / 7m / 30s)
//   CACHE_RATE  share of requests that repeat a known text               (default 0.95)
//   TEXTS       texts per request                                        (default 1)
//   P99_MS      p(99) latency threshold in milliseconds                  (default 2000)
import http from "k6/http";
import { check, fail } from "k6";
import { Rate } from "k6/metrics";

const BASE_URL = (__ENV.BASE_URL || "http://localhost:8000").replace(/\/+$/, "");
const PREFIX = __ENV.PREFIX === undefined ? "/project" : __ENV.PREFIX.replace(/\/+$/, "");
const ENDPOINT = __ENV.ENDPOINT || "predict";
const VUS = parseInt(__ENV.VUS || "10", 10);
const CACHE_RATE = parseFloat(__ENV.CACHE_RATE || "0.95");
const TEXTS = parseInt(__ENV.TEXTS || "1", 10);
const P99_MS = parseInt(__ENV.P99_MS || "2000", 10);

const URL = `${BASE_URL}${PREFIX}/${ENDPOINT}`;

// The repeated texts: what users (and retries) send again and again.
const KNOWN = [
  "I love you!",
  "I hate you!",
  "I am a k8s Cluster!",
  "This movie was fantastic!",
  "Terrible waste of time",
  "The service was okay, nothing special.",
  "What a wonderful day to deploy to production.",
  "The latency spike ruined the demo.",
  "Autoscaling saved us during the launch.",
  "The cache makes every repeated request fast.",
];

export const repeatedTexts = new Rate("repeated_texts");

export const options = {
  scenarios: {
    sentiment: {
      executor: "ramping-vus",
      startVUs: 1,
      stages: [
        { duration: __ENV.RAMP_UP || "30s", target: VUS },
        { duration: __ENV.SUSTAIN || "7m", target: VUS },
        { duration: __ENV.RAMP_DOWN || "30s", target: 0 },
      ],
      gracefulRampDown: "10s",
    },
  },
  thresholds: {
    http_req_duration: [`p(99)<${P99_MS}`],
    http_req_failed: ["rate==0"],
    checks: ["rate==1"],
  },
  summaryTrendStats: ["min", "avg", "med", "max", "p(90)", "p(95)", "p(99)", "p(99.99)"],
};

function uniqueText() {
  // Never seen before: a cache miss that the model must answer.
  return `unique text ${__VU}-${__ITER}-${Date.now()}-${Math.random().toString(36).slice(2, 10)}`;
}

function nextText() {
  const repeated = Math.random() < CACHE_RATE;
  repeatedTexts.add(repeated);
  return repeated ? KNOWN[Math.floor(Math.random() * KNOWN.length)] : uniqueText();
}

export function setup() {
  // Fail fast (and clearly) when the server is not there or not ready yet.
  const res = http.get(`${BASE_URL}${PREFIX}/ready`, { tags: { name: "ready" } });
  if (res.status !== 200) {
    fail(`${BASE_URL}${PREFIX}/ready answered ${res.status}: ${res.body}`);
  }
}

export default function () {
  const texts = [];
  for (let i = 0; i < TEXTS; i++) {
    texts.push(nextText());
  }
  const res = http.post(URL, JSON.stringify({ text: texts }), {
    headers: { "Content-Type": "application/json" },
    tags: { name: ENDPOINT },
  });
  check(res, {
    "status is 200": (r) => r.status === 200,
    "one prediction per text": (r) => {
      try {
        const body = r.json();
        return Array.isArray(body.predictions) && body.predictions.length === texts.length;
      } catch (e) {
        return false;
      }
    },
    "labels and scores": (r) => {
      try {
        return r.json().predictions.every(
          (p) =>
            Array.isArray(p) &&
            p.length > 0 &&
            p.every((s) => typeof s.label === "string" && s.score >= 0 && s.score <= 1),
        );
      } catch (e) {
        return false;
      }
    },
  });
}
