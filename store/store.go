// Package store defines what adaptflow persists and the errors its
// implementations return. Implementations live in subpackages (sqlite, the
// embedded default); the packages that use a store declare the small
// interfaces they need.
package store

import (
	"encoding/json"
	"errors"
	"time"
)

// Errors callers test with errors.Is. The API maps them to status codes.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
)

// Roles of API keys.
const (
	RoleSystem   = "system"
	RoleReviewer = "reviewer"
	RoleEngineer = "engineer"
	RoleAdmin    = "admin"
)

// ValidRole reports whether r is a known role.
func ValidRole(r string) bool {
	switch r {
	case RoleSystem, RoleReviewer, RoleEngineer, RoleAdmin:
		return true
	}
	return false
}

// APIKey is a stored key. Only the SHA-256 of the secret is kept.
type APIKey struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Hash      string    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
}

// DefinitionRecord is a stored process definition version.
type DefinitionRecord struct {
	Name      string          `json:"name"`
	Version   int             `json:"version"`
	Doc       json.RawMessage `json:"definition"`
	Digest    string          `json:"digest"`
	Author    string          `json:"author"`
	CreatedAt time.Time       `json:"created_at"`
}

// PolicyRecord is a stored policy version.
type PolicyRecord struct {
	ID        string          `json:"id"`
	Version   int             `json:"version"`
	Process   string          `json:"process"`
	Doc       json.RawMessage `json:"policy"`
	Digest    string          `json:"digest"`
	Author    string          `json:"author"`
	Note      string          `json:"note,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
}

// Instance is a started process instance. Its live state is in Temporal.
type Instance struct {
	ID             string          `json:"id"`
	Process        string          `json:"process"`
	ProcessVersion int             `json:"process_version"`
	BusinessKey    string          `json:"business_key"`
	Input          json.RawMessage `json:"input"`
	CreatedBy      string          `json:"created_by"`
	CreatedAt      time.Time       `json:"created_at"`
}

// Review statuses and verdicts.
const (
	ReviewOpen    = "open"
	ReviewDecided = "decided"
	ReviewExpired = "expired"

	VerdictApprove = "approve"
	VerdictReject  = "reject"
)

// Review is a human gate of one instance.
type Review struct {
	ID         string     `json:"id"`
	InstanceID string     `json:"instance_id"`
	RunID      string     `json:"run_id"`
	Process    string     `json:"process"`
	Step       string     `json:"step"`
	Queue      string     `json:"queue"`
	Reason     string     `json:"reason"`
	PolicyID   string     `json:"policy_id,omitempty"`
	DecisionID string     `json:"decision_id,omitempty"`
	Status     string     `json:"status"`
	Verdict    string     `json:"verdict,omitempty"`
	Reviewer   string     `json:"reviewer,omitempty"`
	Comment    string     `json:"comment,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	DueAt      *time.Time `json:"due_at,omitempty"`
	DecidedAt  *time.Time `json:"decided_at,omitempty"`
}

// ReviewFilter selects reviews; zero fields match everything.
type ReviewFilter struct {
	Status  string
	Queue   string
	Process string
	Limit   int
}
