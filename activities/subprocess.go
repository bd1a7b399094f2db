package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// SubProcesses is what a process step needs of the store: the definitions
// of the processes it runs, and the instances it starts of them.
type SubProcesses interface {
	Definition(ctx context.Context, name string, version int) (store.DefinitionRecord, error)
	CreateInstance(ctx context.Context, in store.Instance) (store.Instance, bool, error)
	Instance(ctx context.Context, id string) (store.Instance, error)
	ProcessStates(ctx context.Context, process string) ([]store.ProcessState, error)
	Admit(ctx context.Context, id string, limit int) (bool, error)
	Restore(ctx context.Context, id string, pending, queued bool) (store.Instance, bool, error)
}

// SubProcessInput is a process step about to run: the step, and the facts
// its input's templates read.
type SubProcessInput struct {
	StepInput
	// Process names the instance the step runs in.
	Process string
	// Depth is how deep the instance itself is nested (0: started from
	// outside).
	Depth int
}

// SubProcessStart is the instance a process step runs, stored and ready
// for its workflow: its definition (the version it was stored with), id,
// business key and input.
type SubProcessStart struct {
	Definition  process.Definition
	InstanceID  string
	BusinessKey string
	Input       map[string]any
	Depth       int
	// CreatedAt is when the instance was stored (its SLA counts from it).
	CreatedAt time.Time `json:",omitzero"`
	// Held says why the instance may not start yet: its process is
	// paused, or runs its concurrency limit ("" when it may start).
	Held string `json:",omitempty"`
}

// StartSubProcess stores the instance a process step runs, idempotently:
// its business key is the parent instance's id and the step's
// (process.SubProcessKey), so the step run again finds the one stored
// before, with the version and input it was stored with. Its input is
// the step's, its templates expanded, and must fit the process's input
// schema; an unknown process or version, a bad input, or nesting past
// process.MaxSubProcessDepth fail the step for good.
func (a *Activities) StartSubProcess(ctx context.Context, in SubProcessInput) (SubProcessStart, error) {
	spec := in.Step.Process
	if spec == nil {
		return SubProcessStart{}, invalid("step "+in.Step.ID+": no process to run", nil)
	}
	if a.SubProcesses == nil {
		return SubProcessStart{}, invalid("step "+in.Step.ID+": this worker runs no process steps (no store)", nil)
	}
	if in.Depth+1 > process.MaxSubProcessDepth {
		return SubProcessStart{}, invalid(fmt.Sprintf("step %s: process steps nest at most %d deep", in.Step.ID, process.MaxSubProcessDepth), nil)
	}
	input := map[string]any{}
	if len(spec.Input) > 0 {
		rendered, err := a.Env.Render(ctx, map[string]any(spec.Input), in.vars())
		if err != nil {
			return SubProcessStart{}, invalid(fmt.Sprintf("step %s: process.input: %v", in.Step.ID, err), err)
		}
		input = rendered.(map[string]any)
	}
	def, err := a.subDefinition(ctx, in.Step.ID, spec.Name, spec.Version)
	if err != nil {
		return SubProcessStart{}, err
	}
	if err := def.ValidateInput(input); err != nil {
		return SubProcessStart{}, invalid(fmt.Sprintf("step %s: the input of %s: %v", in.Step.ID, def.Ref(), err), err)
	}
	held, err := a.paused(ctx, def.Name)
	if err != nil {
		return SubProcessStart{}, fmt.Errorf("step %s: %w", in.Step.ID, err)
	}
	limit := def.Concurrency // the latest version's, which def is unless the step names one
	if spec.Version != 0 {
		if limit, err = a.concurrency(ctx, def.Name); err != nil {
			return SubProcessStart{}, fmt.Errorf("step %s: %w", in.Step.ID, err)
		}
	}
	key := process.SubProcessKey(in.InstanceID, in.Step.ID)
	inst, created, err := a.SubProcesses.CreateInstance(ctx, store.Instance{
		ID: process.InstanceID(def.Name, key), Process: def.Name, ProcessVersion: def.Version, BusinessKey: key,
		Input: process.JSON(input), CreatedBy: process.SubProcessCreator(in.InstanceID, in.Step.ID), CreatedAt: time.Now().UTC(),
		// The parent's workflow starts it, never the start sweep; one
		// held by a pause, or queued under the process's concurrency
		// limit, reads as held, as other held starts do.
		PendingStart: held != "" || limit > 0,
		Queued:       limit > 0,
	})
	if err != nil {
		return SubProcessStart{}, fmt.Errorf("step %s: store the instance of %s: %w", in.Step.ID, def.Name, err)
	}
	if !created && store.NeverRan(inst) && (inst.StateSeq > 0 || inst.Queued && !inst.PendingStart) {
		// Stored by this step before, and it never ran: ended with this
		// instance's last run (terminated), or out of its queue as that
		// run no longer waited. The step, run again (a retry), stores it
		// again: starting, held or queued as a new one, so that a resume
		// or a freed slot wakes this step again.
		if inst, _, err = a.SubProcesses.Restore(ctx, inst.ID, held != "" || limit > 0, limit > 0); err != nil {
			return SubProcessStart{}, fmt.Errorf("step %s: store the instance of %s again: %w", in.Step.ID, def.Name, err)
		}
	}
	if held == "" {
		if held, err = a.admit(ctx, inst, limit); err != nil {
			return SubProcessStart{}, fmt.Errorf("step %s: %w", in.Step.ID, err)
		}
	}
	if !created {
		if inst.ProcessVersion != def.Version {
			if def, err = a.subDefinition(ctx, in.Step.ID, spec.Name, inst.ProcessVersion); err != nil {
				return SubProcessStart{}, err
			}
		}
		input = map[string]any{}
		if err := json.Unmarshal(inst.Input, &input); err != nil {
			return SubProcessStart{}, fmt.Errorf("step %s: the stored input of %s: %w", in.Step.ID, inst.ID, err)
		}
	}
	return SubProcessStart{Definition: *def, InstanceID: inst.ID, BusinessKey: key, Input: input, Depth: in.Depth + 1, CreatedAt: inst.CreatedAt, Held: held}, nil
}

// paused says why a process's new instances are held ("" when it runs).
func (a *Activities) paused(ctx context.Context, name string) (string, error) {
	states, err := a.SubProcesses.ProcessStates(ctx, name)
	if err != nil {
		return "", fmt.Errorf("is %s paused: %w", name, err)
	}
	if len(states) == 0 || !states[0].Paused {
		return "", nil
	}
	return store.PausedWhy(states[0]), nil
}

// HeldSubProcess is where a process step's instance that waits its turn
// stands: still held (why), or ended without starting (Status, a
// reviewer or system canceled it), or free to start (both empty).
type HeldSubProcess struct {
	Held   string `json:",omitempty"`
	Status string `json:",omitempty"`
}

// SubProcessHeld says whether the instance a process step stored, waiting
// its turn (a pause of its process, or its concurrency limit), may start
// now; a queued one takes a free slot, and the queue moves on behind it.
func (a *Activities) SubProcessHeld(ctx context.Context, start SubProcessStart) (HeldSubProcess, error) {
	inst, err := a.SubProcesses.Instance(ctx, start.InstanceID)
	if err != nil {
		return HeldSubProcess{}, fmt.Errorf("instance %s: %w", start.InstanceID, err)
	}
	if status, _ := store.StatusOf(inst.State); inst.StateRun == store.HeldRun && store.Final(status) {
		return HeldSubProcess{Status: status}, nil // canceled while held
	}
	held, err := a.paused(ctx, start.Definition.Name)
	if err != nil || held != "" {
		return HeldSubProcess{Held: held}, err
	}
	limit, err := a.concurrency(ctx, start.Definition.Name)
	if err != nil {
		return HeldSubProcess{}, err
	}
	held, err = a.admit(ctx, inst, limit)
	if err == nil && held == "" && inst.Queued && a.StartQueuedFn != nil {
		// Admitted: the queue moves on behind it while slots are free.
		if _, err := a.StartQueuedFn(ctx, start.Definition.Name); err != nil {
			a.logger().Warn("starting the instances queued behind a process step's", "process", start.Definition.Name, "err", err)
		}
	}
	return HeldSubProcess{Held: held}, err
}

// concurrency is a process's concurrency limit, its latest definition's
// (0: none).
func (a *Activities) concurrency(ctx context.Context, name string) (int, error) {
	rec, err := a.SubProcesses.Definition(ctx, name, 0)
	if err != nil {
		return 0, fmt.Errorf("definition of %s: %w", name, err)
	}
	n, err := process.ConcurrencyOf(rec.Doc)
	if err != nil {
		return 0, fmt.Errorf("definition of %s: %w", name, err)
	}
	return n, nil
}

// admit gives the instance a process step stored, queued under its
// process's concurrency limit, a slot if one is free; it says why it
// waits when none is ("" once it holds one).
func (a *Activities) admit(ctx context.Context, inst store.Instance, limit int) (string, error) {
	if !inst.Queued {
		return "", nil
	}
	ok, err := a.SubProcesses.Admit(ctx, inst.ID, limit)
	if err != nil || ok {
		return "", err
	}
	return store.QueuedWhy(inst.Process, limit), nil
}

// subDefinition reads a process's definition for a process step (version
// 0: the latest).
func (a *Activities) subDefinition(ctx context.Context, step, name string, version int) (*process.Definition, error) {
	rec, err := a.SubProcesses.Definition(ctx, name, version)
	if errors.Is(err, store.ErrNotFound) {
		what := "process " + name
		if version > 0 {
			what += fmt.Sprintf(" version %d", version)
		}
		return nil, invalid(fmt.Sprintf("step %s: %s is not registered", step, what), err)
	}
	if err != nil {
		return nil, fmt.Errorf("step %s: definition of %s: %w", step, name, err)
	}
	var def process.Definition
	if err := json.Unmarshal(rec.Doc, &def); err != nil {
		return nil, invalid(fmt.Sprintf("step %s: stored definition %s@%d: %v", step, name, rec.Version, err), err)
	}
	return &def, nil
}

// EndUnstarted ends the instance a process step stored and never started
// (its parent was canceled in between): in.State, the instance canceled
// with every step not run, is saved unless a workflow of the instance has
// saved a state already (that workflow ends it). A missing instance is
// nothing to end.
func (a *Activities) EndUnstarted(ctx context.Context, in SaveStateInput) error {
	if a.SubProcesses == nil || a.States == nil {
		return nil
	}
	inst, err := a.SubProcesses.Instance(ctx, in.InstanceID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("end unstarted instance %s: %w", in.InstanceID, err)
	}
	if inst.StateSeq > 0 {
		return nil // a workflow of it saved a state: it ends the instance
	}
	return a.SaveState(ctx, in)
}

// StartQueued starts the instances of a process queued under its
// concurrency limit, oldest first, while slots are free: an instance of it
// has just ended. A worker without a way to start them (StartQueuedFn
// nil) leaves them to the API's start sweep.
func (a *Activities) StartQueued(ctx context.Context, process string) error {
	if a.StartQueuedFn == nil {
		return nil
	}
	_, err := a.StartQueuedFn(ctx, process)
	return err
}
