package app

import (
	"crypto/tls"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/adaptflow/adaptflow/api"
)

// InstanceIDForTest exposes the instance id scheme to the tests.
func InstanceIDForTest(process, businessKey string) string {
	return api.InstanceID(process, businessKey)
}

// ProtoJSON renders a history event as Temporal's JSON history format.
func ProtoJSON(m proto.Message) ([]byte, error) { return protojson.Marshal(m) }

// LoopbackForTest exposes which Temporal addresses count as this machine.
var LoopbackForTest = loopback

// TLSConfigForTest exposes the TLS configuration made for Temporal.
func TLSConfigForTest(o TemporalTLS, address string) (*tls.Config, error) { return o.config(address) }

// LoadCalendar exposes the calendar file's reader to the tests.
var LoadCalendar = loadCalendar

// LostMinAgeForTest sets how long an instance runs before the sweep asks
// Temporal whether it still has its workflow; the returned func undoes it.
func LostMinAgeForTest(d time.Duration) func() {
	old := lostMinAge
	lostMinAge = d
	return func() { lostMinAge = old }
}
