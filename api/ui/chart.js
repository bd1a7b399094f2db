// chart.js: the scale of a signal's chart, apart from drawing it so that
// it can be checked on its own.

// inner is the q-quantile of sorted values, taken at the rank nearer the
// middle (never past it), so that one far value among a few is left out.
function inner(sorted, q) {
  const i = (sorted.length - 1) * q, mid = (sorted.length - 1) / 2;
  return sorted[q < 0.5 ? Math.min(Math.ceil(i), Math.floor(mid)) : Math.max(Math.floor(i), Math.ceil(mid))];
}

// chartScale picks the value range of a signal's chart from its periods
// ({mean, min, max, baseline: {low, high}}): the usual ranges, and the
// periods' spreads with the outer 5% of their lows and highs left out,
// with room around them of up to their own span. A spike far out of that
// (an amount a thousand times the usual) would flatten every other
// period, so it is drawn at the edge instead; clipped says whether any
// was.
export function chartScale(periods) {
  const sorted = (f) => periods.map(f).sort((a, b) => a - b);
  const mins = sorted((p) => p.min), maxes = sorted((p) => p.max);
  let coreLo = inner(mins, 0.05), coreHi = inner(maxes, 0.95);
  for (const p of periods) {
    if (p.baseline) {
      coreLo = Math.min(coreLo, p.baseline.low);
      coreHi = Math.max(coreHi, p.baseline.high);
    }
  }
  let lo = mins[0], hi = maxes[maxes.length - 1];
  for (const p of periods) {
    if (p.baseline) {
      lo = Math.min(lo, p.baseline.low);
      hi = Math.max(hi, p.baseline.high);
    }
  }
  const room = Math.max(coreHi - coreLo, Math.abs(coreHi) * 0.1, 1e-9);
  const scale = { lo: Math.max(lo, coreLo - room), hi: Math.min(hi, coreHi + room) };
  scale.clipped = scale.lo > lo || scale.hi < hi;
  if (scale.hi === scale.lo) {
    scale.hi += 1;
    scale.lo -= 1;
  }
  return scale;
}
