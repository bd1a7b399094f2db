package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/adaptflow/adaptflow/ml/anomaly"
	"github.com/adaptflow/adaptflow/store"
)

const processUsage = `usage:
  adaptflow process signals NAME [--since 7d] [--bucket 1h] [--version N] [--flagged 5]
flags common to all: --server URL ($ADAPTFLOW_SERVER) --api-key KEY ($ADAPTFLOW_API_KEY) --json`

// signalPoint is an observation of a signal as the API reports it.
type signalPoint struct {
	At         time.Time            `json:"at"`
	Value      float64              `json:"value"`
	InstanceID string               `json:"instance_id"`
	Verdict    *store.SignalVerdict `json:"verdict"`
}

// signalsView is the part of GET /v1/processes/{name}/signals the CLI
// prints.
type signalsView struct {
	Process string    `json:"process"`
	Version int       `json:"version"`
	Since   time.Time `json:"since"`
	Signals []struct {
		Name         string        `json:"name"`
		Kind         string        `json:"kind"`
		Field        string        `json:"field"`
		Step         string        `json:"step"`
		Observations int           `json:"observations"`
		Anomalous    int           `json:"anomalous"`
		Latest       *signalPoint  `json:"latest"`
		Flagged      []signalPoint `json:"flagged"`
	} `json:"signals"`
}

// Process runs `adaptflow process`: where a process's signals stand,
// through a running server's API.
func Process(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "signals" {
		fmt.Fprintln(stderr, processUsage)
		return 2
	}
	fs := flag.NewFlagSet("adaptflow process signals", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", envOr("ADAPTFLOW_SERVER", "http://127.0.0.1:8080"), "adaptflow server")
	key := fs.String("api-key", os.Getenv("ADAPTFLOW_API_KEY"), "API key with the engineer role")
	asJSON := fs.Bool("json", false, "print the server's JSON")
	since := fs.String("since", "7d", "the window, back from now")
	bucket := fs.String("bucket", "", "the length of a period of the JSON's periods (default 1h)")
	version := fs.Int("version", 0, "the definition version whose signals to report (default the latest)")
	flagged := fs.Int("flagged", 5, "how many of the latest anomalous observations to list per signal")
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return 2
	}
	if *key == "" || len(pos) != 1 {
		fmt.Fprintln(stderr, processUsage)
		return 2
	}
	q := url.Values{"since": {*since}, "flagged": {fmt.Sprint(*flagged)}}
	if *bucket != "" {
		q.Set("bucket", *bucket)
	}
	if *version != 0 {
		q.Set("version", fmt.Sprint(*version))
	}
	r := &remote{base: strings.TrimRight(*server, "/"), key: *key, http: &http.Client{Timeout: time.Minute}}
	var raw json.RawMessage
	if err := r.do(ctx, "GET", "/v1/processes/"+url.PathEscape(pos[0])+"/signals?"+q.Encode(), "", nil, nil, &raw); err != nil {
		fmt.Fprintf(stderr, "adaptflow process signals: %v\n", err)
		return 1
	}
	if *asJSON {
		fmt.Fprintln(stdout, string(raw))
		return 0
	}
	var v signalsView
	if err := json.Unmarshal(raw, &v); err != nil {
		fmt.Fprintf(stderr, "adaptflow process signals: %v\n", err)
		return 1
	}
	printSignals(stdout, v, *since)
	return 0
}

// printSignals prints where each signal stands, then the flagged
// observations of each.
func printSignals(w io.Writer, v signalsView, since string) {
	if len(v.Signals) == 0 {
		fmt.Fprintf(w, "%s v%d declares no signals\n", v.Process, v.Version)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "SIGNAL\tKIND\tLATEST\tAT\tSTATE\tEXPECTED\tUSUAL\tANOMALOUS (%s)\n", since)
	for _, s := range v.Signals {
		kind := s.Kind
		switch {
		case s.Field != "":
			kind += " of " + s.Field
		case s.Step != "":
			kind += " of " + s.Step
		}
		latest, at, state, expected, usual := "-", "-", "no observation yet", "-", "-"
		if p := s.Latest; p != nil {
			latest, at = fmt.Sprintf("%.4g", p.Value), p.At.Local().Format(time.DateTime)
			state = "no verdict"
			if vd := p.Verdict; vd != nil {
				state = stateOf(*vd)
				if !vd.WarmingUp {
					expected, usual = fmt.Sprintf("%.4g", vd.Expected), fmt.Sprintf("%.4g to %.4g", vd.Low, vd.High)
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d of %d\n", s.Name, kind, latest, at, state, expected, usual, s.Anomalous, s.Observations)
	}
	_ = tw.Flush()
	for _, s := range v.Signals {
		if len(s.Flagged) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s, latest flagged:\n", s.Name)
		for _, p := range s.Flagged {
			who := ""
			if p.InstanceID != "" {
				who = " (instance " + p.InstanceID + ")"
			}
			reason := ""
			if p.Verdict != nil {
				reason = ": " + p.Verdict.Reason
			}
			fmt.Fprintf(w, "  %s%s%s\n", p.At.Local().Format(time.DateTime), who, reason)
		}
	}
}

// stateOf names a verdict in a word or two.
func stateOf(v store.SignalVerdict) string {
	switch {
	case v.WarmingUp:
		return "warming up"
	case v.Anomalous:
		return "ANOMALOUS"
	case v.Recurring:
		return "far off, recurring"
	case v.Score >= anomaly.DefaultThreshold:
		return "off, not flagged"
	default:
		return "usual"
	}
}
