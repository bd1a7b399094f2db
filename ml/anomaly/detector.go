package anomaly

import (
	"math"
	"slices"
	"time"
)

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

// DefaultThreshold flags points whose recent error is above the 90th
// percentile of the error's long-run distribution. That is sensitive on
// purpose: a missed anomaly costs far more than a false alarm (NAB's
// standard profile weighs them 1 to 0.11), and suppression keeps one event
// to one alert.
const DefaultThreshold = 0.9

func (o *DetectorOptions) defaults() {
	if o.Threshold <= 0 {
		o.Threshold = DefaultThreshold
	}
	if o.Warmup <= 0 {
		o.Warmup = 150
	}
	if o.Suppress <= 0 {
		o.Suppress = 200
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
	opts DetectorOptions
	// seasonality: the values one period back (a day, inferred from the
	// spacing of the first timestamps) and the scale of their differences
	times      []time.Time
	period     int
	ring       []float64
	smean      float64
	fast       float64 // fast level, for mean shifts
	n          int
	mean, vari float64 // level
	prev       float64
	dmean      float64 // mean absolute change
	errMean    float64 // long-run error moments
	errVar     float64
	short      float64 // recent error
	sinceFlag  int
}

// Snapshot is a detector's whole state, to persist between observations.
type Snapshot struct {
	Opts      DetectorOptions `json:"opts"`
	N         int             `json:"n"`
	Mean      float64         `json:"mean"`
	Var       float64         `json:"var"`
	Prev      float64         `json:"prev"`
	DMean     float64         `json:"dmean"`
	ErrMean   float64         `json:"err_mean"`
	ErrVar    float64         `json:"err_var"`
	Short     float64         `json:"short"`
	SinceFlag int             `json:"since_flag"`
	Period    int             `json:"period"`
	Ring      []float64       `json:"ring,omitempty"`
	SMean     float64         `json:"smean"`
	Fast      float64         `json:"fast"`
	Times     []time.Time     `json:"times,omitempty"`
}

// Snapshot returns the detector's state.
func (d *Detector) Snapshot() Snapshot {
	return Snapshot{Opts: d.opts, N: d.n, Mean: d.mean, Var: d.vari, Prev: d.prev, DMean: d.dmean, ErrMean: d.errMean, ErrVar: d.errVar,
		Short: d.short, SinceFlag: d.sinceFlag, Period: d.period, Ring: slices.Clone(d.ring), SMean: d.smean, Fast: d.fast, Times: slices.Clone(d.times)}
}

// Restore makes a detector from a snapshot.
func Restore(s Snapshot) *Detector {
	d := NewDetector(s.Opts)
	d.n, d.mean, d.vari, d.prev, d.dmean, d.errMean, d.errVar = s.N, s.Mean, s.Var, s.Prev, s.DMean, s.ErrMean, s.ErrVar
	d.short, d.sinceFlag, d.period, d.ring, d.smean, d.fast, d.times = s.Short, s.SinceFlag, s.Period, s.Ring, s.SMean, s.Fast, s.Times
	return d
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

// push keeps the last period values.
func (d *Detector) push(v float64) {
	if d.period <= 0 {
		return
	}
	if len(d.ring) == d.period {
		copy(d.ring, d.ring[1:])
		d.ring[len(d.ring)-1] = v
		return
	}
	d.ring = append(d.ring, v)
}

const (
	alphaFast  = 0.1
	alphaLevel = 0.01
	alphaErr   = 0.002
	alphaShort = 0.25
)

// ObserveAt is Observe for a value at a time; the times let the detector
// learn the daily cycle.
func (d *Detector) ObserveAt(t time.Time, v float64) Observation {
	if d.period == 0 && len(d.times) < periodSamples {
		d.times = append(d.times, t)
		if len(d.times) == periodSamples {
			d.period = dailyPeriod(d.times)
			d.times = nil
		}
	}
	return d.Observe(v)
}

const periodSamples = 21

// dailyPeriod is the number of points in a day, from the median spacing of
// the first timestamps, or -1 when a day is not a sensible period.
func dailyPeriod(ts []time.Time) int {
	gaps := make([]float64, 0, len(ts)-1)
	for i := 1; i < len(ts); i++ {
		gaps = append(gaps, ts[i].Sub(ts[i-1]).Seconds())
	}
	slices.Sort(gaps)
	g := gaps[len(gaps)/2]
	if g <= 0 {
		return -1
	}
	p := int(math.Round(86400 / g))
	if p < 4 || p > 2000 {
		return -1
	}
	return p
}

// Observe updates the detector with a value and scores it.
func (d *Detector) Observe(v float64) Observation {
	d.n++
	if d.n == 1 {
		d.mean, d.prev, d.fast = v, v, v
		d.push(v)
		return Observation{WarmingUp: true, Expected: v, Low: v, High: v}
	}
	sd := math.Sqrt(d.vari) + 1e-9*math.Max(1, math.Abs(d.mean))
	dsd := d.dmean + 1e-9*math.Max(1, math.Abs(d.mean))
	level := math.Abs(v-d.mean) / sd
	change := math.Abs(v-d.prev) / dsd
	e := math.Max(level/3, change/4)
	// A mean shift: the fast level against the slow one.
	d.fast += alphaFast * (v - d.fast)
	e = math.Max(e, math.Abs(d.fast-d.mean)/sd/1.5)
	// Against the same time a period ago.
	if d.period > 0 && len(d.ring) == d.period {
		back := d.ring[0]
		sdiff := math.Abs(v - back)
		if d.smean > 0 {
			e = math.Max(e, sdiff/(d.smean+1e-9*math.Max(1, math.Abs(d.mean)))/4)
		}
		d.smean += alphaLevel * (sdiff - d.smean)
	}
	d.push(v)
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
