package api

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

// instanceStatuses are what a listing filters by.
var instanceStatuses = []string{store.InstanceStarting, "running", "waiting_review", store.InstanceCompleted, store.InstanceRejected, store.InstanceFailed,
	store.InstanceInProgress, store.InstanceFinished}

// listInstances lists a process's instances, newest first, paged by
// cursor: the failed ones to look into, the ones waiting for review, or
// the one a business key names.
func (s *server) listInstances(c *gin.Context) {
	name := c.Param("name")
	if err := allowProcess(c, name); err != nil {
		fail(c, err)
		return
	}
	f := store.InstanceFilter{Process: name, Status: c.Query("status"), BusinessKey: c.Query("business_key"), After: c.Query("after"), Limit: 50}
	if f.Status != "" && !slices.Contains(instanceStatuses, f.Status) {
		fail(c, badRequest("status", "must be one of %s (got %q)", strings.Join(instanceStatuses, ", "), f.Status))
		return
	}
	if l := c.Query("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > store.MaxInstancePage {
			fail(c, badRequest("limit", "must be between 1 and %d (got %q)", store.MaxInstancePage, l))
			return
		}
		f.Limit = n
	}
	if v := c.Query("since"); v != "" {
		d, err := process.ParseDuration(v)
		if err != nil || d <= 0 {
			fail(c, badRequest("since", "must be a duration such as 4h, 7d or 30d (got %q)", v))
			return
		}
		f.Since = time.Now().Add(-d)
	}
	ctx := c.Request.Context()
	if _, err := s.Definitions.Definition(ctx, name, 0); err != nil { // 404 for an unknown process
		fail(c, err)
		return
	}
	list, err := s.Instances.Instances(ctx, f)
	if errors.Is(err, store.ErrInvalid) {
		fail(c, badRequest("after", "is not a cursor this listing gave out"))
		return
	}
	if err != nil {
		fail(c, err)
		return
	}
	out := gin.H{"instances": list}
	if len(list) == f.Limit {
		out["next"] = store.InstanceCursor(list[len(list)-1])
	}
	c.JSON(http.StatusOK, out)
}
