// Scenario (c), a cache-friendly load: 95% of requests repeat one of a few popular texts, 5% are new.
import { options as baseOptions, popularText, post, summary, uniqueText } from './lib.js';

export const options = baseOptions();
const CACHE_RATE = parseFloat(__ENV.CACHE_RATE || '0.95');
const POOL = parseInt(__ENV.POOL || '10', 10);

export default function () {
  const text = Math.random() < CACHE_RATE ? popularText(POOL) : uniqueText(0);
  post('/predict', [text]);
}

export function handleSummary(data) {
  return summary(data);
}
