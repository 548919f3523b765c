// Scenarios (a) and (b): every request carries one text nobody has sent before.
import { options as baseOptions, post, summary, uniqueText } from './lib.js';

export const options = baseOptions();

export default function () {
  post('/predict', [uniqueText(0)]);
}

export function handleSummary(data) {
  return summary(data);
}
