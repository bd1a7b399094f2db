// Package anomaly turns observations into signals that policies read: an
// online detector (Detector) for any numeric series, the same one behind
// value signals and arrival rates, and NAB's benchmark and scoring to
// measure it (RunNAB).
package anomaly
