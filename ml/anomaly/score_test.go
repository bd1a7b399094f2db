package anomaly

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func synthetic(n int, windows ...[2]int) Series {
	return Series{Name: "s.csv", Values: make([]float64, n), Windows: windows}
}

func TestNABScoreBounds(t *testing.T) {
	a := synthetic(4000, [2]int{1000, 1199}, [2]int{3000, 3399})
	b := synthetic(2000, [2]int{100, 150}, [2]int{1500, 1599}) // the first window is in probation (300 rows)
	for _, p := range Profiles {
		perfect := func(s Series) []float64 {
			sc := make([]float64, len(s.Values))
			for _, w := range s.Windows {
				sc[w[0]] = 1
			}
			return sc
		}
		parts := []SeriesScore{ScoreSeries(a, perfect(a), 0.5, p), ScoreSeries(b, perfect(b), 0.5, p)}
		if got := Normalized(parts); math.Abs(got-100) > 1e-9 {
			t.Errorf("%s: perfect detector scores %v, want 100", p.Name, got)
		}
		if parts[1].TP != 1 || parts[1].FN != 0 {
			t.Errorf("%s: a window inside probation must not be scored: %+v", p.Name, parts[1])
		}
		null := []SeriesScore{ScoreSeries(a, make([]float64, 4000), 0.5, p), ScoreSeries(b, make([]float64, 2000), 0.5, p)}
		if got := Normalized(null); math.Abs(got) > 1e-9 {
			t.Errorf("%s: null detector scores %v, want 0", p.Name, got)
		}
	}
	// A late detection earns less than an early one; a false positive costs.
	std := Profiles[0]
	late := make([]float64, 4000)
	late[1190], late[3000] = 1, 1
	if s := ScoreSeries(a, late, 0.5, std); s.Raw >= 2 || s.Raw <= 0 || s.TP != 2 {
		t.Errorf("late detection: %+v", s)
	}
	fp := make([]float64, 4000)
	fp[1000], fp[3000], fp[2000] = 1, 1, 1
	s := ScoreSeries(a, fp, 0.5, std)
	if s.FP != 1 || s.Raw >= 2 || s.Raw < 2-std.FP-1e-9 {
		t.Errorf("false positive: %+v", s)
	}
	inProbation := make([]float64, 4000)
	inProbation[10] = 1 // probation is 600 rows here: not a false positive
	if s := ScoreSeries(a, inProbation, 0.5, std); s.FP != 0 {
		t.Errorf("a detection in probation was scored: %+v", s)
	}
}

func TestDetectorFlagsASpikeAndLearnsAShift(t *testing.T) {
	d := NewDetector(DetectorOptions{})
	flags := 0
	for i := range 3000 {
		v := 10 + math.Sin(float64(i)/10)
		switch {
		case i == 1000:
			v = 60 // a spike
		case i >= 2000:
			v += 30 // a lasting shift
		}
		o := d.Observe(v)
		if o.Anomalous {
			flags++
			if i != 1000 && (i < 2000 || i > 2020) {
				t.Errorf("flag at %d", i)
			}
		}
		if o.Score < 0 || o.Score > 1 {
			t.Fatalf("score %v", o.Score)
		}
	}
	if flags != 2 {
		t.Fatalf("%d flags, want the spike and the shift", flags)
	}
}

// A surge of a few points is flagged once; the points after the flag are
// as unusual (Continuing), and the first point back to normal is not.
func TestDetectorMarksTheRestOfAnEventContinuing(t *testing.T) {
	d := NewDetector(DetectorOptions{})
	rng := rand.New(rand.NewPCG(11, 12))
	var flagged, continuing []int
	for i := range 1010 {
		v := 10 + rng.NormFloat64()
		if i >= 1000 && i < 1005 {
			v += 40
		}
		o := d.Observe(v)
		if o.Anomalous {
			flagged = append(flagged, i)
			d = Restore(d.Snapshot()) // the event goes on after a restart
		}
		if o.Continuing {
			continuing = append(continuing, i)
		}
	}
	if fmt.Sprint(flagged) != "[1000]" || fmt.Sprint(continuing) != "[1001 1002 1003 1004]" {
		t.Fatalf("flagged %v and continuing %v, want the surge's first point and the rest of it", flagged, continuing)
	}
}

// A daily rhythm with a sharp morning peak is normal; a peak at the wrong
// hour is not.
func TestDetectorLearnsTheDailyRhythm(t *testing.T) {
	d := NewDetector(DetectorOptions{})
	start := time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC)
	const perDay = 288 // five-minute points
	rng := rand.New(rand.NewPCG(1, 2))
	var flags []int
	for i := range 12 * perDay {
		minute := i % perDay
		v := 20 + rng.NormFloat64()
		if minute >= 96 && minute < 108 { // 08:00 to 09:00: the usual peak
			v += 60
		}
		if i == 10*perDay+200 { // 16:40 on day 10: an unusual peak
			v += 60
		}
		if d.ObserveAt(start.Add(time.Duration(i)*5*time.Minute), v).Anomalous {
			flags = append(flags, i)
		}
	}
	var late []int
	for _, f := range flags {
		if f >= 3*perDay { // after three days the rhythm is known
			late = append(late, f)
		}
	}
	if len(late) != 1 || late[0] != 10*perDay+200 {
		t.Fatalf("flags after day 3 at %v, want only the unusual peak at %d", late, 10*perDay+200)
	}
}

// A day that runs 15% below the usual, every point of it within the
// normal range, is flagged as a sustained shift early that day; the days
// before it never are, and neither is the normal day after it (the
// seasonal baseline moved only a little towards the unusual day).
func TestDetectorFlagsASustainedShift(t *testing.T) {
	d := NewDetector(DetectorOptions{})
	start := time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC)
	const perDay = 48 // half-hour points
	rng := rand.New(rand.NewPCG(3, 4))
	var flags []int
	shiftAt := -1
	for i := range 12 * perDay {
		v := 100 + 50*math.Sin(2*math.Pi*float64(i%perDay)/perDay) + 3*rng.NormFloat64()
		if i/perDay == 10 {
			v *= 0.85
		}
		o := d.ObserveAt(start.Add(time.Duration(i)*30*time.Minute), v)
		if o.Anomalous && i >= 3*perDay {
			flags = append(flags, i)
			if o.Shift == -1 && shiftAt < 0 {
				shiftAt = i
			}
		}
	}
	if len(flags) == 0 || flags[0] < 10*perDay || flags[len(flags)-1] >= 11*perDay || shiftAt < 10*perDay || shiftAt > 10*perDay+30 {
		t.Fatalf("flags after day 3 at %v (first shift at %d), want a shift down early on day 10 (from %d)", flags, shiftAt, 10*perDay)
	}
}

// Weekends at half the weekday level are learned as the weekly rhythm and
// not flagged; a Wednesday at the weekend level is.
func TestDetectorLearnsTheWeeklyRhythm(t *testing.T) {
	d := NewDetector(DetectorOptions{})
	start := time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC) // a Monday
	const perDay = 24
	rng := rand.New(rand.NewPCG(5, 6))
	odd := 6*7*perDay + 2*perDay // the Wednesday of week 7
	var flags []int
	for i := range 8 * 7 * perDay {
		at := start.Add(time.Duration(i) * time.Hour)
		v := 100 + 40*math.Sin(2*math.Pi*float64(i%perDay)/perDay)
		if wd := at.Weekday(); wd == time.Saturday || wd == time.Sunday || i/perDay == odd/perDay {
			v *= 0.5
		}
		v += 2 * rng.NormFloat64()
		if d.ObserveAt(at, v).Anomalous && i >= 3*7*perDay {
			flags = append(flags, i)
		}
	}
	if len(flags) == 0 || flags[0] < odd || flags[0] >= odd+perDay {
		t.Fatalf("flags after week 3 at %v, want the first on the odd Wednesday (%d to %d)", flags, odd, odd+perDay)
	}
}

// A spike that keeps coming back is routine: the first few are flagged,
// later ones are not (marked Recurring), and a spike of a size not seen
// before still is.
func TestDetectorTreatsRecurringSpikesAsRoutine(t *testing.T) {
	d := NewDetector(DetectorOptions{})
	rng := rand.New(rand.NewPCG(7, 8))
	const every, big = 100, 2000
	var flagged, recurring []int
	for i := range big + 50 {
		v := 10 + rng.NormFloat64()
		if i >= 300 && i%every == 0 {
			v += 20
		}
		if i == big+10 {
			v += 80
		}
		o := d.Observe(v)
		if o.Anomalous {
			flagged = append(flagged, i)
		}
		if o.Recurring {
			recurring = append(recurring, i)
		}
	}
	if len(flagged) < 2 || flagged[0] != 300 || flagged[len(flagged)-1] != big+10 {
		t.Fatalf("flagged %v, want the first spike (300), a few more, and the larger one (%d)", flagged, big+10)
	}
	for _, i := range flagged[:len(flagged)-1] {
		if i > 1000 {
			t.Fatalf("flagged %v: spike %d still alerts after ten alike", flagged, i)
		}
	}
	if len(recurring) == 0 || recurring[len(recurring)-1] != big {
		t.Fatalf("recurring %v, want the later spikes up to %d", recurring, big)
	}
}

// Errors against the recent level do not add up to a sustained shift: a
// smooth series that wanders (no seasonal baseline) is not flagged as
// shifting, although its values run to one side of the lagging level for
// long stretches.
func TestDetectorDoesNotTakeATrendForAShift(t *testing.T) {
	d := NewDetector(DetectorOptions{})
	rng := rand.New(rand.NewPCG(9, 10))
	v, slope := 50.0, 0.0
	for i := range 20000 {
		slope = 0.99*slope + 0.01*rng.NormFloat64()
		v += slope + 0.05*rng.NormFloat64()
		if o := d.Observe(v); o.Shift != 0 {
			t.Fatalf("point %d (%.2f): flagged as a sustained shift: %+v", i, v, o)
		}
	}
}

// A restored snapshot goes on exactly as the detector it was taken from; a
// snapshot of an older detector restarts the warm-up.
func TestDetectorSnapshotRoundTrip(t *testing.T) {
	// Hourly points for four weeks: the daily and weekly baselines are in
	// the snapshot too.
	at := func(i int) time.Time {
		return time.Date(2024, 3, 4, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour)
	}
	// Spikes every 50 hours fill the tally of recurring surprises.
	val := func(i int) float64 {
		v := 10 + math.Sin(float64(i)) + 3*math.Sin(2*math.Pi*float64(i%24)/24)
		if i%50 == 25 && i > 200 {
			v += 15
		}
		return v
	}
	a := NewDetector(DetectorOptions{})
	const n = 4 * 7 * 24
	for i := range n {
		a.ObserveAt(at(i), val(i))
	}
	raw, err := json.Marshal(a.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var s Snapshot
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	if s.Period != 24 || len(s.Week) != 7*24 {
		t.Fatalf("snapshot period %d, week of %d values", s.Period, len(s.Week))
	}
	b := Restore(s)
	recurring := 0
	for i := n; i < n+200; i++ {
		v := val(i)
		if i == n+100 {
			v = 40
		}
		oa, ob := a.ObserveAt(at(i), v), b.ObserveAt(at(i), v)
		if oa != ob {
			t.Fatalf("point %d: %+v from the detector, %+v from its restored snapshot", i, oa, ob)
		}
		if oa.Recurring {
			recurring++
		}
	}
	if recurring == 0 {
		t.Fatal("no recurring spike after the snapshot: the test does not cover the tally")
	}
	s.Version = 1
	if o := Restore(s).Observe(10); !o.WarmingUp {
		t.Fatalf("an old snapshot was trusted: %+v", o)
	}
}
