// Package cli implements the engineer's subcommands of the adaptflow binary:
// `policy test|simulate|apply|diff` and `audit verify`. Each command takes
// its arguments and writers and returns an exit code; main only dispatches.
package cli

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/adaptflow/adaptflow/process"
)

// doc is one policy or definition file of a directory.
type doc struct {
	path   string
	body   []byte
	policy *process.Policy
	def    *process.Definition
}

// bundle is what a directory holds: definitions and policies.
type bundle struct {
	defs     []doc
	policies []doc
}

// loadDir reads every .yaml, .yml and .json file under dir and sorts it
// into definitions (they have steps) and policies (they have a condition).
func loadDir(dir string) (*bundle, error) {
	b := &bundle{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml", ".json":
		default:
			return nil
		}
		body, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var probe map[string]any
		if err := yaml.NewDecoder(bytes.NewReader(body)).Decode(&probe); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		switch {
		case probe["steps"] != nil:
			def, err := process.ParseDefinition(body)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			b.defs = append(b.defs, doc{path: path, body: body, def: def})
		case probe["when"] != nil:
			p, err := process.ParsePolicy(body)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			b.policies = append(b.policies, doc{path: path, body: body, policy: p})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(b.defs) == 0 && len(b.policies) == 0 {
		return nil, fmt.Errorf("%s holds no process definitions or policies (.yaml, .yml, .json)", dir)
	}
	seen := map[string]string{}
	for _, p := range b.policies {
		if prev, dup := seen[p.policy.ID]; dup {
			return nil, fmt.Errorf("policy %s is defined twice: %s and %s", p.policy.ID, prev, p.path)
		}
		seen[p.policy.ID] = p.path
	}
	return b, nil
}

// definition returns the highest version of a process found in the bundle.
func (b *bundle) definition(name string) *process.Definition {
	var best *process.Definition
	for _, d := range b.defs {
		if d.def.Name == name && (best == nil || d.def.Version > best.Version) {
			best = d.def
		}
	}
	return best
}

// policiesOf returns the bundle's policies of a process, by id.
func (b *bundle) policiesOf(name string) []doc {
	var out []doc
	for _, p := range b.policies {
		if p.policy.Process == name {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b doc) int { return strings.Compare(a.policy.ID, b.policy.ID) })
	return out
}
