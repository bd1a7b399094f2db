package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/adaptflow/adaptflow/process"
)

// ChainReader gives the records whose hash chains [Verify] walks.
type ChainReader interface {
	// ScanChains yields decision records grouped by run, in sequence order.
	ScanChains(ctx context.Context, fn func(record []byte) error) error
	// ScanPolicyVersions yields policy versions in the order they were stored.
	ScanPolicyVersions(ctx context.Context, fn func(PolicyRecord) error) error
}

// VerifyReport is the result of walking the hash chains.
type VerifyReport struct {
	OK             bool   `json:"ok"`
	Decisions      int    `json:"decisions"`
	Runs           int    `json:"runs"`
	PolicyVersions int    `json:"policy_versions"`
	Problems       []Flaw `json:"problems"`
}

// Flaw is a record that was altered, or a gap where one was removed.
type Flaw struct {
	Kind       string `json:"kind"` // decision or policy_version
	ID         string `json:"id"`
	InstanceID string `json:"instance_id,omitempty"`
	RunID      string `json:"run_id,omitempty"`
	Seq        int    `json:"seq,omitempty"`
	Message    string `json:"message"`
}

// maxFlaws bounds the problems a report lists.
const maxFlaws = 100

// Verify walks every decision chain (per run: sequence numbers from 1 with
// no gap, each record's hash over its content, each linked to the one
// before; a run reset from another, as a retry does, starts after the
// records it kept and links to the last of them, in the run it was reset
// from)
// and the chain of policy versions, and reports the first flaws found. The
// last records of a chain removed together leave no trace; everything else
// altered or removed does.
func Verify(ctx context.Context, r ChainReader) (VerifyReport, error) {
	rep := VerifyReport{Problems: []Flaw{}}
	flaw := func(f Flaw) {
		if len(rep.Problems) < maxFlaws {
			rep.Problems = append(rep.Problems, f)
		}
	}
	var prev process.Decision
	// A run reset from another (a retried instance) starts after the
	// records it kept of that run, and links to the last of them: checked
	// once every run has been read.
	type link struct {
		instance, hash string
		seq            int
	}
	type reset struct {
		f    Flaw
		from link
	}
	var resets []reset
	found := map[link]bool{}
	err := r.ScanChains(ctx, func(raw []byte) error {
		var d process.Decision
		if err := json.Unmarshal(raw, &d); err != nil {
			flaw(Flaw{Kind: "decision", Message: "record is not valid JSON: " + err.Error()})
			return nil
		}
		rep.Decisions++
		f := Flaw{Kind: "decision", ID: d.ID, InstanceID: d.InstanceID, RunID: d.RunID, Seq: d.Seq}
		newRun := d.RunID != prev.RunID
		if newRun {
			rep.Runs++
		}
		switch {
		case d.ComputeHash() != d.Hash:
			f.Message = "content does not match its hash: the record was altered"
			flaw(f)
		case newRun && d.Seq != 1:
			from := link{d.InstanceID, d.PrevHash, d.Seq - 1}
			resets = append(resets, reset{f, from})
			found[from] = false
		case newRun && d.PrevHash != "":
			f.Message = "first record of the run links to a previous hash"
			flaw(f)
		case !newRun && d.Seq != prev.Seq+1:
			f.Message = fmt.Sprintf("sequence jumps from %d to %d: a record was removed", prev.Seq, d.Seq)
			flaw(f)
		case !newRun && d.PrevHash != prev.Hash:
			f.Message = fmt.Sprintf("does not link to record %d: the chain was altered", prev.Seq)
			flaw(f)
		}
		prev = d
		return nil
	})
	if err != nil {
		return rep, err
	}
	if len(resets) > 0 {
		err = r.ScanChains(ctx, func(raw []byte) error {
			var d process.Decision
			if json.Unmarshal(raw, &d) == nil && d.ComputeHash() == d.Hash {
				l := link{d.InstanceID, d.Hash, d.Seq}
				if _, ok := found[l]; ok {
					found[l] = true
				}
			}
			return nil
		})
		if err != nil {
			return rep, err
		}
		for _, r := range resets {
			if !found[r.from] {
				r.f.Message = fmt.Sprintf("run starts at sequence %d and goes on from no record %d of another run of its instance: records were removed or altered", r.f.Seq, r.f.Seq-1)
				flaw(r.f)
			}
		}
	}
	prevHash := ""
	err = r.ScanPolicyVersions(ctx, func(p PolicyRecord) error {
		rep.PolicyVersions++
		f := Flaw{Kind: "policy_version", ID: fmt.Sprintf("%s@%d", p.ID, p.Version)}
		switch {
		case PolicyVersionHash(p) != p.Hash:
			f.Message = "content does not match its hash: the version was altered"
			flaw(f)
		case p.PrevHash != prevHash:
			f.Message = "does not link to the version stored before it: a version was removed or altered"
			flaw(f)
		}
		prevHash = p.Hash
		return nil
	})
	rep.OK = len(rep.Problems) == 0
	return rep, err
}
