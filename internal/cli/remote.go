package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// remote is a small client of a running adaptflow server.
type remote struct {
	base string
	key  string
	http *http.Client
}

type remoteError struct {
	status int
	body   string
	// retryAfter is the server's Retry-After (a 429's, a 503's); 0: none.
	retryAfter time.Duration
}

func (e *remoteError) Error() string {
	return fmt.Sprintf("server answered %d: %s", e.status, strings.TrimSpace(e.body))
}

func (r *remote) do(ctx context.Context, method, path, contentType string, body []byte, header map[string]string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.key)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := r.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return err
	}
	if res.StatusCode >= 300 {
		re := &remoteError{status: res.StatusCode, body: string(b)}
		if secs, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && secs > 0 {
			re.retryAfter = time.Duration(secs) * time.Second
		}
		return re
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// doWaiting posts body as JSON, and while the server answers that the work
// asked for is still running and goes on (a classification preview or an
// evaluation past the server's request timeout: 503 "... goes on"), asks
// the same again, which waits for that work, for up to 15 minutes.
func (r *remote) doWaiting(ctx context.Context, method, path string, body []byte, out any) error {
	deadline := time.Now().Add(15 * time.Minute)
	for {
		err := r.do(ctx, method, path, "application/json", body, nil, out)
		var re *remoteError
		if !errors.As(err, &re) || re.status != http.StatusServiceUnavailable || !strings.Contains(re.body, "goes on") || time.Now().After(deadline) {
			return err
		}
	}
}

// subcommand is the subcommand args start with, among subs, and a flag set
// for it; false (after printing usage) when args name none of them.
func subcommand(command string, args, subs []string, usage string, stderr io.Writer) (string, *flag.FlagSet, bool) {
	if len(args) == 0 || !slices.Contains(subs, args[0]) {
		fmt.Fprintln(stderr, usage)
		return "", nil, false
	}
	fs := flag.NewFlagSet("adaptflow "+command+" "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	return args[0], fs, true
}

// remoteFlags are the flags of a command that talks to a running server:
// --server and --api-key, defaulting to $ADAPTFLOW_SERVER and
// $ADAPTFLOW_API_KEY.
type remoteFlags struct{ server, key *string }

func addRemoteFlags(fs *flag.FlagSet, roles string) remoteFlags {
	return remoteFlags{
		server: fs.String("server", envOr("ADAPTFLOW_SERVER", "http://127.0.0.1:8080"), "adaptflow server"),
		key:    fs.String("api-key", os.Getenv("ADAPTFLOW_API_KEY"), "API key with the "+roles+" role"),
	}
}

// remote is the client the parsed flags name.
func (f remoteFlags) remote() *remote {
	return &remote{base: strings.TrimRight(*f.server, "/"), key: *f.key, http: &http.Client{Timeout: time.Minute}}
}

func isStatus(err error, status int) bool {
	var re *remoteError
	return errors.As(err, &re) && re.status == status
}

// policyApply compares a directory with the server; with apply it creates
// new versions of what changed (definitions first), like kubectl apply.
func policyApply(ctx context.Context, args []string, stdout, stderr io.Writer, apply bool) int {
	name := "diff"
	if apply {
		name = "apply"
	}
	fs := flag.NewFlagSet("adaptflow policy "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("f", "", "directory of process definitions and policies (required)")
	rf := addRemoteFlags(fs, "engineer")
	mode := fs.String("mode", "active", "apply changed policies as active, shadow or canary")
	percent := fs.Int("percent", 0, "with --mode canary: the share of instances (1 to 99) the new versions apply to, in place of the active ones")
	note := fs.String("note", "", "change note recorded with each new version")
	guardErr := fs.Float64("guard-max-error-rate-increase", -1, "with --mode canary: roll a canary back on its own when its error rate exceeds the rest's by more than this (0 to 1; 0.05 is 5 points)")
	guardReview := fs.Float64("guard-max-review-rate-increase", -1, "with --mode canary: roll a canary back on its own when its review rate exceeds the rest's by more than this (0 to 1)")
	guardCycle := fs.Float64("guard-max-cycle-time-increase", -1, "with --mode canary: roll a canary back on its own when its median cycle time exceeds the rest's by more than this share (0.2 is 20%)")
	guardMin := fs.Int("guard-min-instances", 0, "with a guard: how many of the canary's instances must have finished before it is judged (default 20)")
	guardPromote := fs.String("guard-promote-after", "", "with --mode canary: promote a canary on its own after this long without a breach (24h, 7d)")
	guardDecide := fs.String("guard-decide-after", "", "with a guard: roll the canary back if it is still unjudged after this long (too few finished, or a figure not shown either way at the confidence; 7d)")
	guardConfidence := fs.Float64("guard-confidence", 0, "with a guard's rates: judge them as samples, rolling back or promoting only when the figures show it with this confidence (0.5 to 0.999, such as 0.95)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return 2
	}
	if *dir == "" && len(pos) == 1 {
		*dir = pos[0]
	}
	canary := *mode == store.ModeCanary
	validMode := *mode == store.ModeActive || *mode == store.ModeShadow || canary
	validPercent := (canary && *percent >= 1 && *percent <= 99) || (!canary && *percent == 0)
	guard := map[string]any{}
	if *guardErr >= 0 {
		guard["max_error_rate_increase"] = *guardErr
	}
	if *guardReview >= 0 {
		guard["max_review_rate_increase"] = *guardReview
	}
	if *guardCycle >= 0 {
		guard["max_cycle_time_increase"] = *guardCycle
	}
	if *guardPromote != "" {
		guard["promote_after"] = *guardPromote
	}
	if *guardMin > 0 {
		guard["min_instances"] = *guardMin
	}
	if *guardConfidence != 0 {
		guard["confidence"] = *guardConfidence
	}
	if *guardDecide != "" {
		guard["decide_after"] = *guardDecide
	}
	validGuard := len(guard) == 0 || canary
	if *dir == "" || *rf.key == "" || !validMode || !validPercent || !validGuard {
		fmt.Fprintf(stderr, "usage: adaptflow policy %s -f DIR --api-key KEY [--server URL] [--mode active|shadow|canary --percent 1-99 [--guard-max-error-rate-increase X] [--guard-max-review-rate-increase X] [--guard-max-cycle-time-increase X] [--guard-min-instances N] [--guard-promote-after D] [--guard-confidence C] [--guard-decide-after D]]\n", name)
		return 2
	}
	b, err := loadDir(*dir)
	if err != nil {
		fmt.Fprintf(stderr, "adaptflow policy %s: %v\n", name, err)
		return 1
	}
	r := rf.remote()
	if *note == "" {
		*note = "adaptflow policy apply -f " + *dir
	}
	changes, failures := 0, 0
	for _, d := range b.defs {
		var cur struct {
			Definition process.Definition `json:"definition"`
		}
		err := r.do(ctx, "GET", fmt.Sprintf("/v1/processes/%s?version=%d", url.PathEscape(d.def.Name), d.def.Version), "", nil, nil, &cur)
		state := "unchanged"
		switch {
		case isStatus(err, http.StatusNotFound):
			state = "new"
		case err != nil:
			fmt.Fprintf(stderr, "process %s@%d: %v\n", d.def.Name, d.def.Version, err)
			failures++
			continue
		case string(process.JSON(cur.Definition)) != string(process.JSON(d.def)):
			state = "conflict: version exists with other content; publish a new version"
			failures++
		}
		fmt.Fprintf(stdout, "process %s@%d: %s\n", d.def.Name, d.def.Version, state)
		if state == "new" {
			changes++
			if apply {
				if err := r.do(ctx, "POST", "/v1/processes", "application/yaml", d.body, nil, nil); err != nil {
					fmt.Fprintf(stderr, "  apply failed: %v\n", err)
					failures++
				}
			}
		}
	}
	for _, p := range b.policies {
		var cur struct {
			ActiveVersion int `json:"active_version"`
			ShadowVersion int `json:"shadow_version"`
			ShadowPercent int `json:"shadow_percent"`
			Latest        struct {
				Version int             `json:"version"`
				Policy  *process.Policy `json:"policy"`
			} `json:"latest"`
		}
		err := r.do(ctx, "GET", "/v1/policies/"+url.PathEscape(p.policy.ID), "", nil, nil, &cur)
		local := *p.policy
		switch {
		case isStatus(err, http.StatusNotFound):
			fmt.Fprintf(stdout, "policy %s: new\n", local.ID)
		case err != nil:
			fmt.Fprintf(stderr, "policy %s: %v\n", local.ID, err)
			failures++
			continue
		default:
			theirs := *cur.Latest.Policy
			theirs.Version = 0
			if string(process.JSON(theirs)) == string(process.JSON(local)) {
				fmt.Fprintf(stdout, "policy %s: unchanged (latest v%d; %s)\n", local.ID, cur.Latest.Version, liveVersions(cur.ActiveVersion, cur.ShadowVersion, cur.ShadowPercent))
				continue
			}
			fmt.Fprintf(stdout, "policy %s: changed (server has v%d)\n", local.ID, cur.Latest.Version)
			for _, line := range strings.Split(strings.TrimRight(policies.Diff(theirs.YAML(), local.YAML()), "\n"), "\n") {
				if strings.HasPrefix(line, "+") || strings.HasPrefix(line, "-") {
					fmt.Fprintf(stdout, "    %s\n", line)
				}
			}
		}
		changes++
		if apply {
			var res struct {
				Version int `json:"version"`
			}
			// A canary is registered as a shadow, then given its share.
			register, as := *mode, *mode
			if canary {
				register, as = store.ModeShadow, fmt.Sprintf("canary %d%%", *percent)
			}
			err := r.do(ctx, "POST", "/v1/policies?mode="+register, "application/yaml", p.body, map[string]string{"X-Change-Note": *note}, &res)
			if err == nil && canary {
				req := map[string]any{"version": res.Version, "mode": store.ModeCanary, "percent": *percent, "note": *note}
				if len(guard) > 0 {
					req["guard"] = guard
				}
				body := process.JSON(req)
				err = r.do(ctx, "POST", "/v1/policies/"+url.PathEscape(local.ID)+"/activate", "application/json", body, nil, nil)
			}
			if err != nil {
				fmt.Fprintf(stderr, "  apply failed: %v\n", err)
				failures++
				continue
			}
			fmt.Fprintf(stdout, "  applied as v%d (%s)\n", res.Version, as)
		}
	}
	switch {
	case failures > 0:
		fmt.Fprintf(stdout, "%d change(s), %d failure(s)\n", changes, failures)
		return 1
	case !apply && changes > 0:
		fmt.Fprintf(stdout, "%d change(s) to apply\n", changes)
		return 3 // like diff(1): differences found
	}
	fmt.Fprintf(stdout, "%d change(s) %s\n", changes, map[bool]string{true: "applied", false: "to apply"}[apply])
	return 0
}

func liveVersions(active, shadow, percent int) string {
	var parts []string
	if active > 0 {
		parts = append(parts, fmt.Sprintf("v%d active", active))
	}
	switch {
	case shadow > 0 && percent > 0:
		parts = append(parts, fmt.Sprintf("v%d canary %d%%", shadow, percent))
	case shadow > 0:
		parts = append(parts, fmt.Sprintf("v%d in shadow", shadow))
	}
	if len(parts) == 0 {
		return "disabled"
	}
	return strings.Join(parts, ", ")
}
