package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/adaptflow/adaptflow/policies"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// RegisterDefinition validates a definition (YAML or JSON), compiles its
// expressions and stores it. created is false when the same version with
// the same content exists; other content under an existing version is
// store.ErrConflict.
func RegisterDefinition(ctx context.Context, defs DefinitionStore, env *policies.Env, body []byte, author string) (*process.Definition, bool, error) {
	def, err := process.ParseDefinition(body)
	if err != nil {
		return nil, false, err
	}
	if err := env.CheckDefinition(def); err != nil {
		return nil, false, err
	}
	if err := checkSchedules(def); err != nil {
		return nil, false, err
	}
	if err := checkSubProcesses(ctx, defs, def); err != nil {
		return nil, false, err
	}
	if def.Classify != nil {
		stored, err := defs.ExampleLabels(ctx, def.Classify.Name)
		if err != nil {
			return nil, false, err
		}
		if err := def.CheckExamples(stored); err != nil {
			return nil, false, err
		}
	}
	doc := process.JSON(def)
	created, err := defs.PutDefinition(ctx, store.DefinitionRecord{
		Name: def.Name, Version: def.Version, Doc: doc, Digest: digest(doc), Author: author, CreatedAt: time.Now().UTC(),
	})
	return def, created, err
}

// RegisterPolicy validates a policy (YAML or JSON) against the latest
// definition of its process, compiles it, runs its test cases and stores it
// as a new version (unless it equals the latest one) live in mode: active,
// or shadow (evaluated and recorded, never applied).
func RegisterPolicy(ctx context.Context, defs DefinitionStore, pols PolicyStore, env *policies.Env, body []byte, author, note, mode string) (*process.Policy, bool, error) {
	p, err := process.ParsePolicy(body)
	if err != nil {
		return nil, false, err
	}
	return registerParsedPolicy(ctx, defs, pols, env, p, author, note, mode)
}

func registerParsedPolicy(ctx context.Context, defs DefinitionStore, pols PolicyStore, env *policies.Env, p *process.Policy, author, note, mode string) (*process.Policy, bool, error) {
	def, err := loadDefinition(ctx, defs, p.Process, 0)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, process.Errors{{Path: "process", Message: fmt.Sprintf("unknown process %q; register it first", p.Process)}}
	}
	if err != nil {
		return nil, false, err
	}
	if _, err := env.CompilePolicy(p, def); err != nil {
		return nil, false, err
	}
	failures, err := env.RunTests(ctx, def, p)
	if err != nil {
		return nil, false, err
	}
	if len(failures) > 0 {
		return nil, false, failures
	}
	if mode == "" {
		mode = store.ModeActive
	}
	doc := process.JSON(p)
	rec, created, err := pols.PutPolicy(ctx, store.PolicyRecord{
		ID: p.ID, Process: p.Process, Doc: doc, Digest: digest(doc), Author: author, Note: note, CreatedAt: time.Now().UTC(),
	}, mode)
	if err != nil {
		return nil, false, err
	}
	p.Version = rec.Version
	p.Mode = mode
	return p, created, nil
}

func loadDefinition(ctx context.Context, defs DefinitionStore, name string, version int) (*process.Definition, error) {
	rec, err := defs.Definition(ctx, name, version)
	if err != nil {
		return nil, err
	}
	var def process.Definition
	if err := json.Unmarshal(rec.Doc, &def); err != nil {
		return nil, fmt.Errorf("stored definition %s@%d: %w", name, rec.Version, err)
	}
	return &def, nil
}

// checkSubProcesses checks that the processes a definition's process
// steps run are registered (the version named, if any), and are not the
// process itself: an instance cannot wait for an instance of its own
// process. (A cycle through other processes is bounded at run time by
// process.MaxSubProcessDepth.)
func checkSubProcesses(ctx context.Context, defs DefinitionStore, def *process.Definition) error {
	var es process.Errors
	check := func(path string, steps []process.Step) error {
		for i, s := range steps {
			if s.Kind != process.KindProcess || s.Process == nil {
				continue
			}
			at := fmt.Sprintf("%s[%d].process", path, i)
			if s.Process.Name == def.Name {
				es.Add(at+".name", "a process step cannot run its own process (%s)", def.Name)
				continue
			}
			_, err := defs.Definition(ctx, s.Process.Name, s.Process.Version)
			switch {
			case errors.Is(err, store.ErrNotFound) && s.Process.Version > 0:
				es.Add(at+".version", "%s has no version %d; register it first", s.Process.Name, s.Process.Version)
			case errors.Is(err, store.ErrNotFound):
				es.Add(at+".name", "no process %s is registered; register it first", s.Process.Name)
			case err != nil:
				return err
			}
		}
		return nil
	}
	if err := check("steps", def.Steps); err != nil {
		return err
	}
	if err := check("catalog", def.Catalog); err != nil {
		return err
	}
	return es.Err()
}
