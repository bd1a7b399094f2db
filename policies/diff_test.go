package policies

import (
	"fmt"
	"strings"
	"testing"
)

func TestDiff(t *testing.T) {
	for _, tc := range []struct{ a, b, want string }{
		{"a\nb\nc\n", "a\nb\nc\n", "  a\n  b\n  c\n"},
		{"a\nb\nc\n", "a\nx\nc\n", "  a\n- b\n+ x\n  c\n"},
		{"a\nc\n", "a\nb\nc\n", "  a\n+ b\n  c\n"},
		{"", "a\n", "+ a\n"},
		{"a\nb\n", "", "- a\n- b\n"},
		// The middle is diffed line by line, around what both share.
		{"h\n1\n2\n3\nt\n", "h\n2\n3\n4\nt\n", "  h\n- 1\n  2\n  3\n+ 4\n  t\n"},
	} {
		if got := Diff(tc.a, tc.b); got != tc.want {
			t.Errorf("Diff(%q, %q) = %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
}

// Two large documents that differ throughout are diffed within bounds:
// what differs is shown removed, then added, rather than by a table of
// their lengths' product.
func TestDiffOfLargeDocuments(t *testing.T) {
	var a, b strings.Builder
	a.WriteString("head\n")
	b.WriteString("head\n")
	for i := range 5000 {
		fmt.Fprintf(&a, "a%d\n", i)
		fmt.Fprintf(&b, "b%d\n", i)
	}
	got := Diff(a.String(), b.String())
	lines := strings.Split(strings.TrimRight(got, "\n"), "\n")
	if len(lines) != 10001 || lines[0] != "  head" || lines[1] != "- a0" || lines[5001] != "+ b0" {
		t.Fatalf("%d lines: %q ... %q", len(lines), lines[:2], lines[len(lines)-1])
	}
}
