package anomaly

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// NAB scoring (Numenta Anomaly Benchmark v1.1), implemented from its
// description: a detection is a row whose score is at or above the
// threshold; the first 15% of a series (at most 750 rows) is probation and
// not scored; the earliest detection inside a window earns a reward scaled
// by a sigmoid of how early it came; a window with no detection costs the
// false-negative weight; a detection outside a window costs the
// false-positive weight scaled by its distance from the previous window;
// the sum is normalized so that the null detector scores 0 and the perfect
// one 100.

// Profile is one of NAB's cost matrices.
type Profile struct {
	Name       string
	TP, FP, FN float64
}

// Profiles are NAB's three profiles.
var Profiles = []Profile{
	{Name: "standard", TP: 1, FP: 0.11, FN: 1},
	{Name: "reward_low_FP_rate", TP: 1, FP: 0.22, FN: 1},
	{Name: "reward_low_FN_rate", TP: 1, FP: 0.11, FN: 2},
}

// Series is one NAB data file with its labeled windows.
type Series struct {
	Name    string // path relative to the data directory
	Times   []time.Time
	Values  []float64
	Windows [][2]int // inclusive row ranges
	// Unlabeled is a series the labels do not name (not even with no
	// window, as NAB's own labels name every series): scored as having
	// no anomaly, which a labels file of other series makes wrong.
	Unlabeled bool
}

func scaledSigmoid(pos float64) float64 {
	if pos >= 3 {
		return -1
	}
	return 2/(1+math.Exp(5*pos)) - 1
}

func probation(n int) int {
	return int(math.Min(math.Floor(0.15*float64(n)), 0.15*5000))
}

// SeriesScore is the raw NAB score of one series and its bounds.
type SeriesScore struct {
	Raw, Null, Perfect float64
	TP, FP, FN         int
}

// ScoreSeries scores the anomaly scores of one series at a threshold.
func ScoreSeries(s Series, scores []float64, threshold float64, p Profile) SeriesScore {
	n := len(scores)
	prob := probation(n)
	maxTP := scaledSigmoid(-1)
	var out SeriesScore
	inWindow := make([]int, n) // window index + 1, 0 outside
	for wi, w := range s.Windows {
		for i := w[0]; i <= w[1] && i < n; i++ {
			inWindow[i] = wi + 1
		}
	}
	best := make(map[int]float64) // window -> best detection reward
	scorable := map[int]bool{}
	prevRight, prevWidth := -1, 0.0
	for i := range n {
		wi := inWindow[i] - 1
		if wi >= 0 && i >= prob {
			scorable[wi] = true
		}
		if scores[i] >= threshold && i >= prob {
			if wi >= 0 {
				w := s.Windows[wi]
				width := float64(w[1] - w[0] + 1)
				pos := -float64(w[1]-i+1) / width
				r := scaledSigmoid(pos) * p.TP / maxTP
				if v, ok := best[wi]; !ok || r > v {
					best[wi] = r
				}
			} else {
				pos := 3.0
				if prevRight >= 0 {
					pos = math.Abs(float64(prevRight-i)) / (prevWidth - 1)
				}
				out.Raw += scaledSigmoid(pos) * p.FP
				out.FP++
			}
		}
		if wi >= 0 && i == s.Windows[wi][1] {
			prevRight, prevWidth = i, float64(s.Windows[wi][1]-s.Windows[wi][0]+1)
		}
	}
	for wi := range scorable {
		if r, ok := best[wi]; ok {
			out.Raw += r
			out.TP++
		} else {
			out.Raw -= p.FN
			out.FN++
		}
		out.Null -= p.FN
		out.Perfect += p.TP
	}
	return out
}

// Normalized is 100 (raw - null) / (perfect - null) over many series.
func Normalized(parts []SeriesScore) float64 {
	var raw, null, perfect float64
	for _, s := range parts {
		raw += s.Raw
		null += s.Null
		perfect += s.Perfect
	}
	if perfect == null {
		return 0
	}
	return 100 * (raw - null) / (perfect - null)
}

// LoadNAB reads every series under dir/data with the windows of
// dir/labels/combined_windows.json.
func LoadNAB(dir string) ([]Series, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "labels", "combined_windows.json"))
	if err != nil {
		return nil, fmt.Errorf("nab: labels: %w", err)
	}
	var windows map[string][][2]string
	if err := json.Unmarshal(raw, &windows); err != nil {
		return nil, fmt.Errorf("nab: labels: %w", err)
	}
	var out []Series
	dataDir := filepath.Join(dir, "data")
	err = filepath.WalkDir(dataDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".csv") {
			return err
		}
		rel, _ := filepath.Rel(dataDir, path)
		rel = filepath.ToSlash(rel)
		s, err := readSeries(path)
		if err != nil {
			return fmt.Errorf("nab: %s: %w", rel, err)
		}
		s.Name = rel
		ws, ok := windows[rel]
		s.Unlabeled = !ok
		for _, w := range ws {
			lo, err := parseTime(w[0])
			if err != nil {
				return fmt.Errorf("nab: labels: a window of %s: %w", rel, err)
			}
			hi, err := parseTime(w[1])
			if err != nil {
				return fmt.Errorf("nab: labels: a window of %s: %w", rel, err)
			}
			a, b := -1, -1
			for i, t := range s.Times {
				if a < 0 && !t.Before(lo) {
					a = i
				}
				if !t.After(hi) {
					b = i
				}
			}
			if a >= 0 && b >= a {
				s.Windows = append(s.Windows, [2]int{a, b})
			}
		}
		out = append(out, s)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("nab: no series under " + dataDir)
	}
	slices.SortFunc(out, func(a, b Series) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// parseTime reads a NAB timestamp ("2014-04-01 00:00:00", with or
// without fractions of a second), or an RFC 3339 one.
func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", time.RFC3339Nano} {
		if t, err := time.Parse(layout, strings.TrimSpace(s)); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("timestamp %q is not a date and time such as 2014-04-01 00:00:00", s)
}

func readSeries(path string) (Series, error) {
	f, err := os.Open(path)
	if err != nil {
		return Series{}, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	if _, err := r.Read(); err != nil {
		return Series{}, err
	}
	var s Series
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return s, nil
		}
		if err != nil {
			return s, err
		}
		line, _ := r.FieldPos(0)
		if len(rec) < 2 {
			return s, fmt.Errorf("line %d: want the columns timestamp,value", line)
		}
		t, err := parseTime(rec[0])
		if err != nil {
			return s, fmt.Errorf("line %d: %w", line, err)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rec[1]), 64)
		if err != nil {
			return s, fmt.Errorf("line %d: value %q is not a number", line, rec[1])
		}
		s.Times = append(s.Times, t)
		s.Values = append(s.Values, v)
	}
}
