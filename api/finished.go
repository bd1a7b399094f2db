package api

import (
	"sync"

	"github.com/adaptflow/adaptflow/store"
	"github.com/adaptflow/adaptflow/workflows"
)

// finishedStatesKept bounds how many finished instances' states an API
// replica keeps in memory.
const finishedStatesKept = 10_000

// finishedStates keeps the states of finished instances (completed, failed
// or rejected), which never change again, so that reading one does not ask
// a worker to replay its history. Only instances started before state
// projections need it; the others are read from the store. The oldest
// entry goes first when full.
type finishedStates struct {
	mu    sync.Mutex
	max   int
	byID  map[string]workflows.State
	order []string
}

func newFinishedStates(max int) *finishedStates {
	return &finishedStates{max: max, byID: map[string]workflows.State{}}
}

func (f *finishedStates) get(id string) (workflows.State, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.byID[id]
	return st, ok
}

// put keeps st when the instance has finished.
func (f *finishedStates) put(id string, st workflows.State) {
	if !store.Final(st.Status) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.byID[id]; ok {
		return
	}
	if len(f.order) >= f.max {
		delete(f.byID, f.order[0])
		f.order = f.order[1:]
	}
	f.byID[id] = st
	f.order = append(f.order, id)
}
