// Open-loop load: requests arrive at a constant RATE per second whatever the answers take (k6's
// constant-arrival-rate), as users arrive in production. An arrival k6 cannot start because every VU is
// still waiting is counted in k6's dropped_iterations: the server fell behind.
//   RATE        arrivals per second      MAX_VUS     most requests in flight at once
//   CACHE_RATE  share of requests repeating one of POOL popular texts (0: all texts unique)
import { popularText, post, summary, uniqueText } from './lib.js';

const RATE = parseInt(__ENV.RATE || '10', 10);
const CACHE_RATE = parseFloat(__ENV.CACHE_RATE || '0');
const POOL = parseInt(__ENV.POOL || '10', 10);

export const options = {
  scenarios: {
    open: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: __ENV.DURATION || '10s',
      preAllocatedVUs: Math.min(parseInt(__ENV.MAX_VUS || '400', 10), Math.max(8, RATE)),
      maxVUs: parseInt(__ENV.MAX_VUS || '400', 10),
      gracefulStop: __ENV.GRACEFUL_STOP || '10s',
    },
  },
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
  noUsageReport: true,
};

export default function () {
  const text = CACHE_RATE > 0 && Math.random() < CACHE_RATE ? popularText(POOL) : uniqueText(0);
  post('/predict', [text]);
}

export function handleSummary(data) {
  return summary(data);
}
