// Package examples embeds the example processes, policies and calendar that
// `adaptflow dev` loads at start.
package examples

import "embed"

// FS holds processes/*.yaml, policies/*.yaml and calendar.yaml.
//
//go:embed processes/*.yaml policies/*.yaml calendar.yaml
var FS embed.FS
