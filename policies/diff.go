package policies

import (
	"strings"
)

// maxDiffCells bounds the table of the longest common subsequence: past
// it (two large documents that differ throughout), the middle that differs
// is shown as removed, then added.
const maxDiffCells = 4 << 20

// Diff returns a line diff of a and b: lines only in a start with "-",
// lines only in b with "+", common lines with " ". The lines a and b share
// at their start and end are matched first; what is left between is
// diffed by a longest-common-subsequence table, within maxDiffCells.
func Diff(a, b string) string {
	x, y := splitLines(a), splitLines(b)
	var out strings.Builder
	pre := 0
	for pre < len(x) && pre < len(y) && x[pre] == y[pre] {
		out.WriteString("  " + x[pre] + "\n")
		pre++
	}
	suf := 0
	for suf < len(x)-pre && suf < len(y)-pre && x[len(x)-1-suf] == y[len(y)-1-suf] {
		suf++
	}
	diffMiddle(&out, x[pre:len(x)-suf], y[pre:len(y)-suf])
	for _, l := range x[len(x)-suf:] {
		out.WriteString("  " + l + "\n")
	}
	return out.String()
}

// diffMiddle writes the diff of x and y.
func diffMiddle(out *strings.Builder, x, y []string) {
	n, m := len(x), len(y)
	if (n+1)*(m+1) > maxDiffCells {
		for _, l := range x {
			out.WriteString("- " + l + "\n")
		}
		for _, l := range y {
			out.WriteString("+ " + l + "\n")
		}
		return
	}
	lcs := make([][]int32, n+1)
	for i := range lcs {
		lcs[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && x[i] == y[j]:
			out.WriteString("  " + x[i] + "\n")
			i++
			j++
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			out.WriteString("- " + x[i] + "\n")
			i++
		default:
			out.WriteString("+ " + y[j] + "\n")
			j++
		}
	}
}

func splitLines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
