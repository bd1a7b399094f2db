package api

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/gin-gonic/gin"
)

// maxBatchStarts bounds the instances one batch start holds.
const maxBatchStarts = 500

// batchStartConcurrency is how many workflow starts of a batch go to
// Temporal at once.
const batchStartConcurrency = 32

type batchStartRequest struct {
	// Version is the definition version of the new instances (default the
	// latest).
	Version   int          `json:"version,omitempty"`
	Instances []batchStart `json:"instances"`
}

type batchStart struct {
	BusinessKey string         `json:"business_key"`
	Input       map[string]any `json:"input"`
}

// batchStartResult is how one start of a batch went: the status and body
// its own start would have answered (201 created, 200 existing), or its
// status and error.
type batchStartResult struct {
	BusinessKey string       `json:"business_key"`
	Status      int          `json:"status"`
	Instance    gin.H        `json:"instance,omitempty"`
	Error       *ErrorDetail `json:"error,omitempty"`
}

// validate refuses a batch that no start of can be right: empty, too
// large, a business key missing or named twice.
func (req batchStartRequest) validate() error {
	if len(req.Instances) == 0 || len(req.Instances) > maxBatchStarts {
		return badRequest("instances", "holds 1 to %d instances (got %d)", maxBatchStarts, len(req.Instances))
	}
	seen := make(map[string]int, len(req.Instances))
	for i, it := range req.Instances {
		field := fmt.Sprintf("instances[%d].business_key", i)
		if err := validBusinessKey(field, it.BusinessKey); err != nil {
			return err
		}
		if j, ok := seen[it.BusinessKey]; ok {
			return badRequest(field, "%q is instances[%d]'s too: each instance once", it.BusinessKey, j)
		}
		seen[it.BusinessKey] = i
	}
	return nil
}

// startInstances starts many instances of a process at once (a nightly
// reconciliation of every store's counts): each exactly as by its own
// start, idempotent by its business key. An input the definition refuses
// (400), or a start that fails (503 while Temporal is down: the instance
// is stored, and the sweep finishes its start), is reported with the
// start it concerns; the others start all the same.
func (s *server) startInstances(c *gin.Context) {
	var req batchStartRequest
	if !bindValid(c, &req) {
		return
	}
	// Each start counts as a request against the key's rate limit (the
	// request itself took one): a batch is no way around it.
	if err := s.spendBatch(c, len(req.Instances)-1, "instances", "starts"); err != nil {
		fail(c, err)
		return
	}
	def, _, err := s.definition(c.Request.Context(), c.Param("name"), req.Version)
	if err != nil {
		fail(c, err)
		return
	}
	n := len(req.Instances)
	starts := make([]stored, n)
	errs := make([]error, n)
	// Stored one by one (the store takes one write at a time anyway),
	// then started side by side.
	for i, it := range req.Instances {
		starts[i], errs[i] = s.createInstance(c, def, it.BusinessKey, it.Input)
	}
	// Once a start fails (Temporal is down, most likely), the rest are not
	// tried: they would wait out the same failure one by one. They are
	// stored all the same, and the sweep starts them.
	var stop atomic.Bool
	sem := make(chan struct{}, batchStartConcurrency)
	var wg sync.WaitGroup
	for i := range starts {
		if errs[i] != nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if stop.Load() {
				errs[i] = &httpError{status: http.StatusServiceUnavailable, code: "unavailable",
					msg: "not tried, as an earlier start of this batch failed; the instance is stored, and the sweep starts it once Temporal answers (or start it again)"}
				return
			}
			st := &starts[i]
			if errs[i] = st.held(s.starts.start(c.Request.Context(), st.def, st.inst, st.input)); errs[i] != nil {
				stop.Store(true)
			}
		})
	}
	wg.Wait()
	results := make([]batchStartResult, n)
	created, existing, failed := 0, 0, 0
	for i, it := range req.Instances {
		r := batchStartResult{BusinessKey: it.BusinessKey}
		switch {
		case errs[i] != nil:
			status, d := errorDetail(c, errs[i])
			d.Field = itemField(i, d.Field)
			for j := range d.Details {
				d.Details[j].Field = itemField(i, d.Details[j].Field)
			}
			r.Status, r.Error = status, &d
			failed++
		case starts[i].created:
			r.Status, r.Instance = http.StatusCreated, starts[i].response()
			created++
		default:
			r.Status, r.Instance = http.StatusOK, starts[i].response()
			existing++
		}
		if errs[i] == nil {
			s.countStart(starts[i])
		}
		results[i] = r
	}
	c.JSON(http.StatusOK, gin.H{"created": created, "existing": existing, "failed": failed, "results": results})
}

// itemField is a field of the i-th start of a batch ("input.amount" is
// "instances[3].input.amount").
func itemField(i int, field string) string {
	if field == "" {
		return ""
	}
	return fmt.Sprintf("instances[%d].%s", i, field)
}
