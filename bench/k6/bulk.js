// Scenario (d): bulk requests of BATCH (default 32) new texts each.
import { options as baseOptions, post, summary, uniqueText } from './lib.js';

export const options = baseOptions();
const BATCH = parseInt(__ENV.BATCH || '32', 10);

export default function () {
  const batch = [];
  for (let i = 0; i < BATCH; i++) {
    batch.push(uniqueText(i));
  }
  post('/bulk-predict', batch);
}

export function handleSummary(data) {
  return summary(data);
}
