package api

import (
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/adaptflow/adaptflow/store"
)

// calibrationBins is how many equal-width confidence bins the expected
// calibration error is computed over.
const calibrationBins = 10

// qualityNote says what the verdicts can and cannot tell.
const qualityNote = "from reviewers' verdicts only: reviewed cases are mostly the unsure or flagged ones, so accuracy here understates the model's accuracy on all traffic; compare it across thresholds and periods"

// qualityReport is the model's quality as reviewers judged it.
type qualityReport struct {
	Classifier string         `json:"classifier"`
	Since      time.Time      `json:"since"`
	Note       string         `json:"note"`
	Overall    qualityFigures `json:"overall"`
	// Labels are by the label the model predicted.
	Labels []labelQuality `json:"labels"`
	// Periods are consecutive buckets of the window, oldest first.
	Periods []periodQuality `json:"periods"`
}

type qualityFigures struct {
	Verdicts       int     `json:"verdicts"`
	Accuracy       float64 `json:"accuracy"`
	MeanConfidence float64 `json:"mean_confidence"`
	// ECE is the expected calibration error: how far stated confidence is
	// from observed accuracy, weighted over 10 confidence bins.
	ECE float64 `json:"ece"`
}

type labelQuality struct {
	Label string `json:"label"`
	qualityFigures
	// CorrectedTo counts the labels reviewers chose instead.
	CorrectedTo map[string]int `json:"corrected_to,omitempty"`
	// Periods are the label's figures per bucket, oldest first.
	Periods []periodQuality `json:"periods"`
}

type periodQuality struct {
	Start time.Time `json:"start"`
	qualityFigures
}

func figures(vs []store.Verdict) qualityFigures {
	f := qualityFigures{Verdicts: len(vs)}
	if len(vs) == 0 {
		return f
	}
	var right int
	var conf float64
	var cnt [calibrationBins]int
	var binConf, binRight [calibrationBins]float64
	for _, v := range vs {
		ok := v.Predicted == v.Label
		b := min(int(v.Confidence*calibrationBins), calibrationBins-1)
		cnt[b]++
		binConf[b] += v.Confidence
		conf += v.Confidence
		if ok {
			right++
			binRight[b]++
		}
	}
	n := float64(len(vs))
	f.Accuracy, f.MeanConfidence = float64(right)/n, conf/n
	for b := range calibrationBins {
		if cnt[b] > 0 {
			f.ECE += float64(cnt[b]) / n * math.Abs(binRight[b]/float64(cnt[b])-binConf[b]/float64(cnt[b]))
		}
	}
	return f
}

// classifierQuality reports, from reviewers' verdicts, the classifier's
// accuracy and calibration overall, per predicted label and per period.
func (s *server) classifierQuality(c *gin.Context) {
	window, bucket, err := windowParams(c, 30*24*time.Hour, 7*24*time.Hour)
	if err != nil {
		fail(c, err)
		return
	}
	now := time.Now().UTC()
	since := now.Add(-window)
	name := c.Param("name")
	vs, err := s.Verdicts.Verdicts(c.Request.Context(), name, since)
	if err != nil {
		fail(c, err)
		return
	}
	rep := qualityReport{Classifier: name, Since: since, Note: qualityNote, Overall: figures(vs), Labels: []labelQuality{}, Periods: []periodQuality{}}
	byLabel := map[string][]store.Verdict{}
	for _, v := range vs {
		byLabel[v.Predicted] = append(byLabel[v.Predicted], v)
	}
	labels := make([]string, 0, len(byLabel))
	for l := range byLabel {
		labels = append(labels, l)
	}
	slices.Sort(labels)
	for _, l := range labels {
		lq := labelQuality{Label: l, qualityFigures: figures(byLabel[l])}
		for _, v := range byLabel[l] {
			if v.Label != v.Predicted {
				if lq.CorrectedTo == nil {
					lq.CorrectedTo = map[string]int{}
				}
				lq.CorrectedTo[v.Label]++
			}
		}
		rep.Labels = append(rep.Labels, lq)
	}
	rep.Periods = periods(vs, since, now, bucket)
	for i := range rep.Labels {
		rep.Labels[i].Periods = periods(byLabel[rep.Labels[i].Label], since, now, bucket)
	}
	c.JSON(http.StatusOK, rep)
}

// periods splits verdicts into consecutive buckets from since to now.
func periods(vs []store.Verdict, since, now time.Time, bucket time.Duration) []periodQuality {
	out := []periodQuality{}
	for start := since; start.Before(now); start = start.Add(bucket) {
		end := start.Add(bucket)
		var in []store.Verdict
		for _, v := range vs {
			if !v.At.Before(start) && v.At.Before(end) {
				in = append(in, v)
			}
		}
		out = append(out, periodQuality{Start: start, qualityFigures: figures(in)})
	}
	return out
}
