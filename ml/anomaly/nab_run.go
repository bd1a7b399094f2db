package anomaly

import (
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// NABReport is the result of running the product's detector over a NAB
// data set.
type NABReport struct {
	Series          int                `json:"series"`
	Points          int                `json:"points"`
	Threshold       float64            `json:"threshold"`
	Fixed           map[string]float64 `json:"fixed_threshold_scores"`
	BestThreshold   float64            `json:"best_threshold"`
	Best            map[string]float64 `json:"best_threshold_scores"`
	PointsPerSecond float64            `json:"points_per_second"`
}

// RunNAB runs a fresh detector with opts over every series, online, writes
// one CSV per series under out (when out is not empty), and scores the
// result with the fixed threshold and the best one.
func RunNAB(series []Series, opts DetectorOptions, out string) (NABReport, error) {
	opts.defaults()
	all := make([][]float64, len(series))
	rep := NABReport{Series: len(series), Threshold: opts.Threshold, Fixed: map[string]float64{}, Best: map[string]float64{}}
	start := time.Now()
	for si, s := range series {
		d := NewDetector(opts)
		scores := make([]float64, len(s.Values))
		for i, v := range s.Values {
			o := d.ObserveAt(s.Times[i], v)
			scores[i] = o.Score
			if !o.Anomalous && o.Score >= opts.Threshold {
				// Held back (a repeat of a larger recent event, a size of
				// miss that has recurred lately, or within the suppression
				// span): the column thresholded at the product's threshold
				// gives exactly the product's flags.
				scores[i] = math.Nextafter(opts.Threshold, 0)
			}
		}
		all[si] = scores
		rep.Points += len(s.Values)
	}
	rep.PointsPerSecond = float64(rep.Points) / time.Since(start).Seconds()
	if out != "" {
		for si, s := range series {
			if err := writeResult(filepath.Join(out, filepath.FromSlash(s.Name)), s, all[si], opts.Threshold); err != nil {
				return rep, err
			}
		}
	}
	score := func(th float64, p Profile) float64 {
		parts := make([]SeriesScore, len(series))
		for si, s := range series {
			parts[si] = ScoreSeries(s, all[si], th, p)
		}
		return Normalized(parts)
	}
	for _, p := range Profiles {
		rep.Fixed[p.Name] = score(opts.Threshold, p)
	}
	// The best threshold for the standard profile, over the scores seen.
	var cand []float64
	for _, sc := range all {
		for _, v := range sc {
			if v >= opts.Threshold/2 {
				cand = append(cand, v)
			}
		}
	}
	slices.Sort(cand)
	cand = slices.Compact(cand)
	step := max(1, len(cand)/1000)
	best, bestTh := score(opts.Threshold, Profiles[0]), opts.Threshold
	for i := 0; i < len(cand); i += step {
		if v := score(cand[i], Profiles[0]); v > best {
			best, bestTh = v, cand[i]
		}
	}
	rep.BestThreshold = bestTh
	for _, p := range Profiles {
		rep.Best[p.Name] = score(bestTh, p)
	}
	return rep, nil
}

func writeResult(path string, s Series, scores []float64, threshold float64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"timestamp", "value", "anomaly_score", "label"})
	for i := range scores {
		label := "0"
		if scores[i] >= threshold {
			label = "1"
		}
		_ = w.Write([]string{s.Times[i].Format("2006-01-02 15:04:05"), strconv.FormatFloat(s.Values[i], 'g', -1, 64), strconv.FormatFloat(scores[i], 'f', 6, 64), label})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
