// Shared helpers for the benchmark's k6 scripts. Environment (set by bench/run.py):
//   BASE_URL      server root including the API prefix, e.g. http://127.0.0.1:8000
//   VUS, DURATION constant-VUs load for DURATION (e.g. "30s"); bounded by gracefulStop
//   RUN_ID        nonce that keeps "unique" texts unique across scenarios, servers and runs
//   SUMMARY_FILE  where handleSummary writes k6's end-of-test data as JSON
import http from 'k6/http';
import { Counter } from 'k6/metrics';

const corpus = JSON.parse(open('../corpus.json')).sentences;

export const errors = new Counter('bench_errors');
export const texts = new Counter('bench_texts');

export const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8000';
const RUN_ID = __ENV.RUN_ID || 'run';

export function options() {
  return {
    scenarios: {
      load: {
        executor: 'constant-vus',
        vus: parseInt(__ENV.VUS || '10', 10),
        duration: __ENV.DURATION || '10s',
        gracefulStop: __ENV.GRACEFUL_STOP || '10s',
      },
    },
    summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
    noUsageReport: true,
  };
}

// A sentence nobody has sent before: a per-request id in front of an SST-2-length review sentence.
export function uniqueText(slot) {
  const n = __VU * 1000003 + __ITER * 97 + slot;
  return `review ${RUN_ID}-${__VU}-${__ITER}-${slot}: ${corpus[n % corpus.length]}`;
}

// One of a few popular sentences, sent verbatim (what a cache is for).
export function popularText(poolSize) {
  return corpus[Math.floor(Math.random() * poolSize)];
}

const params = { headers: { 'Content-Type': 'application/json' }, timeout: '60s' };

// POST the texts and count the request as an error unless it is a 200 with one prediction per text.
export function post(path, batch) {
  const res = http.post(`${BASE_URL}${path}`, JSON.stringify({ text: batch }), params);
  let ok = res.status === 200;
  if (ok) {
    try {
      const predictions = res.json('predictions');
      ok = Array.isArray(predictions) && predictions.length === batch.length && predictions[0].length >= 2;
    } catch (e) {
      ok = false;
    }
  }
  if (ok) {
    texts.add(batch.length);
  } else {
    errors.add(1, { status: String(res.status) });
  }
  return res;
}

export function summary(data) {
  const out = {};
  out[__ENV.SUMMARY_FILE || 'summary.json'] = JSON.stringify(data);
  return out;
}
