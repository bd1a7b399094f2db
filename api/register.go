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
