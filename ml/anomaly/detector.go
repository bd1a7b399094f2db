package anomaly

import "math"

// DetectorOptions are a detector's settings; the zero value gives the
// defaults a process gets.
type DetectorOptions struct {
	// Threshold is the likelihood at or above which a point is flagged.
	Threshold float64
	// Warmup is how many points are seen before any is scored.
	Warmup int
	// Suppress is how many points after a flag are not flagged again: one
	// event, one alert.
	Suppress int
}

// DefaultThreshold flags points whose error is as unlikely as a 3.3-sigma
// event of the error's own recent distribution.
const DefaultThreshold = 0.9995

func (o *DetectorOptions) defaults() {
	if o.Threshold <= 0 {
		o.Threshold = DefaultThreshold
	}
	if o.Warmup <= 0 {
		o.Warmup = 150
	}
	if o.Suppress <= 0 {
		o.Suppress = 300
	}
}

// Detector is an online anomaly detector for one signal: each observation
// updates it once, in order. It tracks the level and scale of the values and
// of their changes with exponentially weighted moments, turns a point's
// deviation into an error, and scores how unusual the recent errors are
// against the long-run distribution of errors (an anomaly likelihood). A
// lasting level shift is flagged, then learned as the new normal as the
// moments move.
type Detector struct {
	opts       DetectorOptions
	n          int
	mean, vari float64 // level
	prev       float64
	dmean      float64 // mean absolute change
	errMean    float64 // long-run error moments
	errVar     float64
	short      float64 // recent error
	sinceFlag  int
}

// NewDetector makes a detector.
func NewDetector(opts DetectorOptions) *Detector {
	opts.defaults()
	return &Detector{opts: opts, sinceFlag: math.MaxInt / 2}
}

// Observation is a detector's verdict on one point.
type Observation struct {
	Score     float64 // likelihood in [0, 1]; 0 while warming up or suppressed
	Anomalous bool
	WarmingUp bool
	Expected  float64
	Low, High float64
}

const (
	alphaLevel = 0.01
	alphaErr   = 0.002
	alphaShort = 0.25
)

// Observe updates the detector with a value and scores it.
func (d *Detector) Observe(v float64) Observation {
	d.n++
	if d.n == 1 {
		d.mean, d.prev = v, v
		return Observation{WarmingUp: true, Expected: v, Low: v, High: v}
	}
	sd := math.Sqrt(d.vari) + 1e-9*math.Max(1, math.Abs(d.mean))
	dsd := d.dmean + 1e-9*math.Max(1, math.Abs(d.mean))
	level := math.Abs(v-d.mean) / sd
	change := math.Abs(v-d.prev) / dsd
	e := math.Max(level/3, change/4)
	e = math.Min(e, 50)
	obs := Observation{Expected: d.mean, Low: d.mean - 3*sd, High: d.mean + 3*sd}

	// Update the moments after scoring against them.
	diff := v - d.mean
	d.mean += alphaLevel * diff
	d.vari = (1 - alphaLevel) * (d.vari + alphaLevel*diff*diff)
	d.dmean += alphaLevel * (math.Abs(v-d.prev) - d.dmean)
	d.prev = v
	d.short += alphaShort * (e - d.short)
	if d.n <= d.opts.Warmup {
		ed := e - d.errMean
		a := 1 / float64(d.n)
		d.errMean += a * ed
		d.errVar = (1 - a) * (d.errVar + a*ed*ed)
		obs.WarmingUp = true
		return obs
	}
	z := (d.short - d.errMean) / (math.Sqrt(d.errVar) + 1e-6)
	score := 0.5 * math.Erfc(-z/math.Sqrt2)
	ed := e - d.errMean
	d.errMean += alphaErr * ed
	d.errVar = (1 - alphaErr) * (d.errVar + alphaErr*ed*ed)
	d.sinceFlag++
	if d.sinceFlag <= d.opts.Suppress {
		return obs
	}
	obs.Score = score
	if score >= d.opts.Threshold {
		obs.Anomalous = true
		d.sinceFlag = 0
	}
	return obs
}
