package app

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
)

// TemporalTLS secures the connection of the server and the worker to the
// Temporal frontend: Temporal Cloud, or a self-hosted cluster that requires
// TLS (and perhaps client certificates).
type TemporalTLS struct {
	// Enabled turns TLS on, trusting the system's CAs. Any other field, or
	// an API key (Options.TemporalAPIKey), turns it on too.
	Enabled bool
	// CertFile and KeyFile are a client certificate and its key, PEM, for
	// mutual TLS. They are read again at each handshake, so a rotated pair
	// applies to the next connection without a restart.
	CertFile, KeyFile string
	// CAFile is a PEM bundle of the CAs to trust instead of the system's
	// (a self-hosted cluster's own CA).
	CAFile string
	// ServerName is the name the frontend's certificate must carry
	// (default: the host of the Temporal address).
	ServerName string
}

func (o TemporalTLS) on() bool {
	return o.Enabled || o.CertFile != "" || o.KeyFile != "" || o.CAFile != "" || o.ServerName != ""
}

// config is the client's TLS configuration for the frontend at address:
// nil when TLS is off. Its errors name the flag at fault.
func (o TemporalTLS) config(address string) (*tls.Config, error) {
	if !o.on() {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.ServerName}
	if c.ServerName == "" {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return nil, fmt.Errorf("--temporal-address: %q is not host:port", address)
		}
		c.ServerName = host
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--temporal-tls-ca: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--temporal-tls-ca: %s holds no PEM certificate", o.CAFile)
		}
	}
	if o.CertFile != "" { // with KeyFile: Options.validate checks the pair is whole
		// Checked now, so a wrong pair stops the start with a clear error
		// rather than failing every handshake.
		if _, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile); err != nil {
			return nil, fmt.Errorf("--temporal-tls-cert and --temporal-tls-key: %w", err)
		}
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			pair, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("temporal client certificate: %w", err)
			}
			return &pair, nil
		}
	}
	return c, nil
}
