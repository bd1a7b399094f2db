package anomaly

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNABOnSharedData(t *testing.T) {
	dir := "../../../shared/data/nab"
	if _, err := os.Stat(dir); err != nil {
		t.Skip("no NAB data here")
	}
	series, err := LoadNAB(dir)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := RunNAB(series, DetectorOptions{}, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", rep)
}

// writeNAB lays out a NAB directory under a temporary one: the series
// (relative path → CSV text) and the windows' JSON.
func writeNAB(t *testing.T, series map[string]string, windows string) string {
	t.Helper()
	dir := t.TempDir()
	for rel, text := range series {
		path := filepath.Join(dir, "data", filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "labels"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "labels", "combined_windows.json"), []byte(windows), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Any directory of NAB's layout loads: its series by relative path, with
// their windows as point ranges (timestamps with or without fractions,
// CRLF line ends); a timestamp or value it cannot read is an error that
// names the file and line, never a zero time.
func TestLoadNAB(t *testing.T) {
	dir := writeNAB(t, map[string]string{
		"a/one.csv": "timestamp,value\r\n2014-04-01 00:00:00,1\r\n2014-04-01 00:05:00,2.5\r\n2014-04-01 00:10:00.000000,3\r\n2014-04-01 00:15:00,4\r\n",
		"b/two.csv": "timestamp,value\n2015-01-01 00:00:00,7\n",
	}, `{"a/one.csv": [["2014-04-01 00:05:00.000000", "2014-04-01 00:10:00.000000"]], "b/two.csv": []}`)
	series, err := LoadNAB(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(series) != 2 || series[0].Name != "a/one.csv" || series[1].Name != "b/two.csv" {
		t.Fatalf("series: %+v", series)
	}
	if one := series[0]; len(one.Values) != 4 || one.Values[1] != 2.5 || !one.Times[2].Equal(time.Date(2014, 4, 1, 0, 10, 0, 0, time.UTC)) || !slices.Equal(one.Windows, [][2]int{{1, 2}}) {
		t.Fatalf("a/one.csv: %+v", one)
	}

	for name, c := range map[string]struct{ csv, want string }{
		"a timestamp": {"timestamp,value\n2014-04-01 00:00:00,1\n04/01/2014,2\n", "nab: x.csv: line 3: timestamp \"04/01/2014\" is not a date and time"},
		"a value":     {"timestamp,value\n2014-04-01 00:00:00,n/a\n", "nab: x.csv: line 2: value \"n/a\" is not a number"},
		"a column":    {"timestamp\n2014-04-01 00:00:00\n", "nab: x.csv: line 2: want the columns timestamp,value"},
	} {
		_, err := LoadNAB(writeNAB(t, map[string]string{"x.csv": c.csv}, `{}`))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s it cannot read: %v, want %q", name, err, c.want)
		}
	}
	if _, err := LoadNAB(writeNAB(t, map[string]string{"x.csv": "timestamp,value\n2014-04-01 00:00:00,1\n"}, `{"x.csv": [["soon", "later"]]}`)); err == nil || !strings.Contains(err.Error(), `labels: a window of x.csv: timestamp "soon"`) {
		t.Errorf("a window it cannot read: %v", err)
	}
}
