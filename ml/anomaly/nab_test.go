package anomaly

import (
	"os"
	"testing"
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
