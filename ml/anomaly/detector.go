package anomaly

import (
	"math"
	"slices"
	"time"
)

// DetectorOptions are a detector's settings; the zero value gives the
// defaults a process gets.
type DetectorOptions struct {
	// Threshold is the score at or above which a point is flagged.
	Threshold float64
	// Warmup is how many points are seen before any is scored.
	Warmup int
	// Suppress is how many points after a flag are not flagged again.
	// Longer-lasting events are kept to one alert by the record rule (see
	// Detector), so this only needs to cover the few points of one event.
	Suppress int
}

// DefaultThreshold flags a point whose error is at least errorScale times
// the typical error (score = e/(e+errorScale), so 0.5 is e = errorScale).
const DefaultThreshold = 0.5

// errorScale is the error, in units of the typical error, that scores 0.5.
//
// The constants of the detector were set on the NAB subset inside the range
// where the score is flat (errorScale 6 to 7, shiftDrift 1.25 to 1.5,
// shiftLimit 40 to 60, seasonSmoothing 0.1 to 0.2, weekSmoothing 0.1 to
// 0.4, recurLimit 3 to 5, recurHorizon 2,000 to 20,000 all score within a
// point or two), not at the best point, so that other series fare alike.
const errorScale = 7.0

// Sustained shifts: a two-sided CUSUM of the point's signed error (clipped
// to ±shiftClip usual errors) less shiftDrift accumulates while the values
// keep running to one side of what was expected, and scores
// c/(c+shiftLimit), 0.5 at shiftLimit. It catches what no single point
// shows: a day of lower demand, a slow drift, a missing daily peak.
const (
	shiftDrift = 1.25
	shiftLimit = 50.0
	shiftClip  = 5.0
)

// Recurring surprises are routine: the detector tallies past bursts of
// large errors (runs of errors of at least burstFloor, ended by burstGap
// smaller ones) at their peak, by size in half-octave bins, in a tally that
// fades over about recurHorizon points. A point is not flagged when more
// than recurLimit earlier bursts were about as large or larger: a series
// that spikes every few hours stops alerting after a few spikes, while a
// surprise of a size not seen lately still alerts.
const (
	burstFloor   = errorScale / 2
	burstGap     = 30
	recurHorizon = 5000.0
	recurLimit   = 4.0
	tallyBins    = 40 // half octaves of error size from 1 to 2^19.5
)

func (o *DetectorOptions) defaults() {
	if o.Threshold <= 0 {
		o.Threshold = DefaultThreshold
	}
	if o.Warmup <= 0 {
		o.Warmup = 150
	}
	if o.Suppress <= 0 {
		o.Suppress = 30
	}
}

// Detector is an online anomaly detector for one signal: each observation
// updates it once, in order.
//
// Each point is compared with what three simple forecasts expected: the
// recent level (an exponentially weighted mean), the previous value, and,
// when the points have timestamps with a daily rhythm, the seasonal
// baseline: the values at that time of day, smoothed over the days, or at
// that time of the week once a weekly baseline fits better. Each
// forecast's miss is divided by that forecast's typical miss
// (an exponentially weighted mean absolute error), giving errors in units
// of "usual". The point's error is the larger of the level and
// previous-value errors — a spike or a jump misses both — unless the daily
// forecast has been about as good (within a factor of two) and explains the
// point, so the usual Monday-morning peak is not an anomaly.
//
// The score is e/(e+7): 0.5 when the error is seven times the usual one. A
// point is flagged when its score reaches the threshold and its error is a
// record against a decaying maximum of earlier errors: a series that spikes
// every hour raises its own bar, and a lasting shift is flagged once, then
// learned as the new normal as the level and scales move.
//
// Values that each look ordinary but keep missing a seasonal baseline to
// the same side add up in a cumulative sum (CUSUM) of the signed errors;
// when it passes its limit the point is flagged as a sustained shift
// (Observation.Shift) and the sum starts again. Errors against the recent
// level do not add up: the level lags every trend, so its misses run to
// one side whenever the series moves, shift or not.
//
// A point whose error reaches the threshold is not flagged when errors as
// large have recurred lately (Observation.Recurring; see recurLimit).
type Detector struct {
	opts      DetectorOptions
	n         int
	level     float64
	prev      float64
	scale     float64 // typical |v - level|
	dscale    float64 // typical |v - prev|
	sscale    float64 // typical |v - seasonal baseline|
	record    float64 // decaying maximum of errors
	up, down  float64 // CUSUMs of the signed errors above and below
	sinceFlag int
	times     []time.Time
	period    int
	ring      baseline // the daily baseline, one value per point of the period
	// The weekly baseline, for periods of at most maxWeekPeriod points a
	// day: week holds 7 days of smoothed values, wscale its typical error
	// and wn how many points it has scored.
	week   baseline
	wscale float64
	wn     int
	sn     int // points the daily baseline has scored
	// The tally of recurring surprises: decayed counts of bursts by size,
	// kept in units of growth (which grows instead of every count
	// shrinking), and the burst under way.
	tally      [tallyBins]float64
	growth     float64
	burstPeak  float64
	burstQuiet int
	flagSide   int // the side (+1, -1) of the last flagged point's miss
}

// snapshotVersion changes when the detector's state changes meaning; a
// snapshot of another version restarts the detector.
const snapshotVersion = 4

// Snapshot is a detector's whole state, to persist between observations.
type Snapshot struct {
	Version    int             `json:"version"`
	Opts       DetectorOptions `json:"opts"`
	N          int             `json:"n"`
	Level      float64         `json:"level"`
	Prev       float64         `json:"prev"`
	Scale      float64         `json:"scale"`
	DScale     float64         `json:"dscale"`
	SScale     float64         `json:"sscale"`
	Record     float64         `json:"record"`
	Up         float64         `json:"up"`
	Down       float64         `json:"down"`
	SinceFlag  int             `json:"since_flag"`
	Period     int             `json:"period"`
	Ring       []float64       `json:"ring,omitempty"`
	Week       []float64       `json:"week,omitempty"`
	WScale     float64         `json:"wscale,omitempty"`
	WN         int             `json:"wn,omitempty"`
	SN         int             `json:"sn,omitempty"`
	Tally      []float64       `json:"tally,omitempty"`
	Growth     float64         `json:"growth,omitempty"`
	BurstPeak  float64         `json:"burst_peak,omitempty"`
	BurstQuiet int             `json:"burst_quiet,omitempty"`
	FlagSide   int             `json:"flag_side,omitempty"`
	Times      []time.Time     `json:"times,omitempty"`
}

// Snapshot returns the detector's state.
func (d *Detector) Snapshot() Snapshot {
	return Snapshot{Version: snapshotVersion, Opts: d.opts, N: d.n, Level: d.level, Prev: d.prev, Scale: d.scale, DScale: d.dscale,
		SScale: d.sscale, Record: d.record, Up: d.up, Down: d.down, SinceFlag: d.sinceFlag, Period: d.period, Ring: d.ring.ordered(), Times: slices.Clone(d.times),
		Week: d.week.ordered(), WScale: d.wscale, WN: d.wn, SN: d.sn, Tally: slices.Clone(d.tally[:]), Growth: d.growth,
		BurstPeak: d.burstPeak, BurstQuiet: d.burstQuiet, FlagSide: d.flagSide}
}

// Restore makes a detector from a snapshot. A snapshot of an earlier
// detector gives a fresh one with the same options, which warms up again.
func Restore(s Snapshot) *Detector {
	d := NewDetector(s.Opts)
	if s.Version != snapshotVersion {
		return d
	}
	d.n, d.level, d.prev, d.scale, d.dscale, d.sscale, d.record = s.N, s.Level, s.Prev, s.Scale, s.DScale, s.SScale, s.Record
	d.up, d.down = s.Up, s.Down
	d.sinceFlag, d.period, d.ring, d.times = s.SinceFlag, s.Period, baseline{vals: s.Ring}, s.Times
	d.week, d.wscale, d.wn, d.sn = baseline{vals: s.Week}, s.WScale, s.WN, s.SN
	copy(d.tally[:], s.Tally)
	d.growth, d.burstPeak, d.burstQuiet, d.flagSide = max(s.Growth, 1), s.BurstPeak, s.BurstQuiet, s.FlagSide
	return d
}

// NewDetector makes a detector.
func NewDetector(opts DetectorOptions) *Detector {
	opts.defaults()
	return &Detector{opts: opts, sinceFlag: math.MaxInt / 2, growth: 1}
}

// Observation is a detector's verdict on one point.
type Observation struct {
	Score     float64 // in [0, 1]; 0 while warming up
	Anomalous bool
	// Shift is +1 (above) or -1 (below) on a flagged point when what
	// flagged it is a sustained shift, values running to one side of what
	// is usual, rather than the point alone; 0 otherwise.
	Shift int
	// Recurring is set on a point whose error reached the threshold but
	// is not flagged, as errors as large have recurred lately.
	Recurring bool
	// Continuing is set on a point that scores at or above the threshold
	// within the span after a flag (DetectorOptions.Suppress), off to the
	// same side as the flagged point: it is not flagged again, as it
	// continues the flagged event, but it is as unusual. A signal reads it
	// as anomalous. (A point back to normal after a surge misses the
	// level the surge raised, but to the other side.)
	Continuing bool
	WarmingUp  bool
	// WarmupLeft is how many more points the detector sees before it
	// scores, while it warms up.
	WarmupLeft int
	// Expected is what the forecast that explains the point best (the
	// recent level, or the daily or weekly baseline) expected; Low and
	// High bound the values that forecast would not flag.
	Expected  float64
	Low, High float64
}

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

const (
	alphaLevel = 0.1   // the level forecast follows the recent values
	alphaScale = 0.005 // typical errors are long-run
	// recordDecay is how fast the record of earlier errors fades per
	// point (half-life about 70 points).
	recordDecay = 0.99
	// seasonalEdge: the daily forecast may explain a point when its typical
	// error is within this factor of the level forecast's.
	seasonalEdge = 2.0
	// seasonSmoothing is the weight of the newest day in the seasonal
	// baseline (the usual textbook value for seasonal smoothing).
	seasonSmoothing = 0.1
	// weekSmoothing is the weight of the newest week in the weekly
	// baseline: higher than the daily one's, as weeks come seven times
	// more slowly.
	weekSmoothing = 0.2
	// maxWeekPeriod bounds the points in a day for which a weekly baseline
	// is kept (5-minute points: 2016 values a week), to keep the state a
	// detector saves after each point small.
	maxWeekPeriod = 288
)

// Observe updates the detector with a value and scores it.
func (d *Detector) Observe(v float64) Observation {
	d.n++
	if d.n == 1 {
		d.level, d.prev = v, v
		d.push(v)
		return Observation{WarmingUp: true, WarmupLeft: d.opts.Warmup, Expected: v, Low: v, High: v}
	}
	eps := 1e-9 * math.Max(1, math.Abs(d.level))
	miss := math.Abs(v - d.level)
	step := math.Abs(v - d.prev)
	e := math.Max(miss/(d.scale+eps), step/(d.dscale+eps))
	expected, scale := d.level, d.scale // the forecast that explains v best
	signed := 0.0                       // the miss of the seasonal baseline in use, if any
	if d.period > 0 && d.ring.full(d.period) {
		smiss := math.Abs(v - d.ring.oldest())
		if d.sscale < d.scale*seasonalEdge {
			if se := smiss / (d.sscale + eps); se < e {
				e, expected, scale = se, d.ring.oldest(), d.sscale
			}
			signed = (v - d.ring.oldest()) / (d.sscale + eps)
		}
		d.sn++
		d.sscale = learnScale(d.sscale, smiss, d.sn, eps)
	}
	if d.period > 0 && d.period <= maxWeekPeriod {
		// The weekly baseline explains the point instead when it has
		// scored a week and its typical error is below the daily one's:
		// Monday's peak is expected on Mondays.
		wp := 7 * d.period
		if d.week.full(wp) {
			wmiss := math.Abs(v - d.week.oldest())
			if d.wn > wp && d.wscale < d.sscale && d.wscale < d.scale*seasonalEdge {
				if we := wmiss / (d.wscale + eps); we < e {
					e, expected, scale = we, d.week.oldest(), d.wscale
				}
				signed = (v - d.week.oldest()) / (d.wscale + eps)
			}
			d.wn++
			d.wscale = learnScale(d.wscale, wmiss, d.wn, eps)
		}
		d.week.push(wp, v, weekSmoothing)
	}
	d.push(v)
	obs := Observation{Expected: expected, Low: expected - errorScale*scale, High: expected + errorScale*scale}

	// Learn after scoring. The first points set the scales by a plain mean;
	// one huge miss moves a scale by at most ten times itself.
	a := alphaScale
	if d.n < 50 {
		a = 1 / float64(d.n)
	}
	d.scale += a * (math.Min(miss, 10*d.scale+eps) - d.scale)
	d.dscale += a * (math.Min(step, 10*d.dscale+eps) - d.dscale)
	d.level += alphaLevel * (v - d.level)
	d.prev = v
	if d.n <= d.opts.Warmup {
		obs.WarmingUp, obs.WarmupLeft = true, d.opts.Warmup-d.n+1
		return obs
	}
	record := e >= d.record
	if record {
		d.record = e
	} else {
		d.record *= recordDecay
	}
	obs.Score = e / (e + errorScale)
	signed = max(-shiftClip, min(shiftClip, signed))
	d.up = max(0, d.up+signed-shiftDrift)
	d.down = max(0, d.down-signed-shiftDrift)
	c := max(d.up, d.down)
	shift := c / (c + shiftLimit)
	dir := 1
	if d.down > d.up {
		dir = -1
	}
	if c >= shiftLimit {
		d.up, d.down = 0, 0
	}
	routine := d.recurs(e)
	d.sinceFlag++
	if d.sinceFlag > d.opts.Suppress {
		switch {
		case record && obs.Score >= d.opts.Threshold && routine:
			obs.Recurring = true
		case record && obs.Score >= d.opts.Threshold:
			obs.Anomalous = true
		case shift >= d.opts.Threshold:
			obs.Anomalous, obs.Shift = true, dir
		}
	}
	side := 1
	if v < expected {
		side = -1
	}
	if obs.Shift != 0 {
		side = obs.Shift
	}
	if obs.Anomalous {
		d.sinceFlag, d.flagSide = 0, side
	} else if d.sinceFlag <= d.opts.Suppress && side == d.flagSide && (obs.Score >= d.opts.Threshold || shift >= d.opts.Threshold) {
		obs.Continuing = true
	}
	obs.Score = max(obs.Score, shift)
	return obs
}

// learnScale moves a baseline's typical error towards its latest miss: a
// plain mean until the mean's weight falls to alphaScale, then an
// exponentially weighted mean in which one huge miss moves the scale by at
// most ten times itself, so an unusual day does not make the baseline look
// unreliable for the days after it.
func learnScale(scale, miss float64, n int, eps float64) float64 {
	if w := 1 / float64(n); w > alphaScale {
		return scale + w*(miss-scale)
	}
	return scale + alphaScale*(math.Min(miss, 10*scale+eps)-scale)
}

// recurs says whether more than recurLimit earlier bursts (decayed) were
// about as large as error e or larger, and adds e to the burst under way.
func (d *Detector) recurs(e float64) bool {
	var c float64
	for _, n := range d.tally[tallyBin(e):] {
		c += n
	}
	c /= d.growth
	d.growth /= 1 - 1/recurHorizon
	if e >= burstFloor {
		d.burstPeak = max(d.burstPeak, e)
		d.burstQuiet = 0
	} else if d.burstPeak > 0 {
		d.burstQuiet++
		if d.burstQuiet >= burstGap {
			d.tally[tallyBin(d.burstPeak)] += d.growth
			d.burstPeak = 0
		}
	}
	if d.growth > 1e100 {
		for i := range d.tally {
			d.tally[i] /= d.growth
		}
		d.growth = 1
	}
	return c > recurLimit
}

// tallyBin is the half-octave bin of an error.
func tallyBin(e float64) int {
	if e <= 1 {
		return 0
	}
	return min(int(2*math.Log2(e))+1, tallyBins-1)
}

// push keeps, for each point of the period, the seasonal baseline: the
// value at that time of day smoothed over the days (Holt-Winters style),
// so one unusual day moves tomorrow's expectation by a tenth, not wholly.
func (d *Detector) push(v float64) {
	if d.period <= 0 {
		return
	}
	d.ring.push(d.period, v, seasonSmoothing)
}

// baseline is a ring of n seasonal baselines, one per point of a season.
// The oldest, at head, is the one the next point is compared with.
type baseline struct {
	vals []float64
	head int
}

func (b *baseline) full(n int) bool { return len(b.vals) == n }
func (b *baseline) oldest() float64 { return b.vals[b.head] }

// push moves the ring on by one point: the oldest baseline, which v was
// compared with, becomes the newest, moved towards v by weight w. Until
// the ring is full, v itself is the baseline.
func (b *baseline) push(n int, v, w float64) {
	if len(b.vals) < n {
		b.vals = append(b.vals, v)
		return
	}
	b.vals[b.head] += w * (v - b.vals[b.head])
	b.head = (b.head + 1) % n
}

// ordered is the ring oldest first, as a snapshot keeps it.
func (b *baseline) ordered() []float64 {
	if len(b.vals) == 0 {
		return nil
	}
	return append(slices.Clone(b.vals[b.head:]), b.vals[:b.head]...)
}
