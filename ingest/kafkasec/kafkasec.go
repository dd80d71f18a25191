// Package kafkasec holds the Kafka security settings of streamrec — TLS
// (with a private CA and an optional client certificate) and SASL (PLAIN,
// SCRAM-SHA-256, SCRAM-SHA-512) — and turns them into what the kafka-go
// clients take: a *kafka.Dialer for readers, consumer groups and direct
// connections, and a *kafka.Transport for writers.
//
// The zero Config is plain TCP without SASL: its Dialer and Transport equal
// kafka-go's defaults (DefaultDialer with the timeout asked for, and
// DefaultTransport) field for field.
// Flags and environment variables are parsed in cmd/streamrec; this package
// only validates and builds.
package kafkasec

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// SASL mechanisms, as Config.SASLMechanism spells them (case does not
// matter).
const (
	MechanismPlain       = "plain"
	MechanismSCRAMSHA256 = "scram-sha-256"
	MechanismSCRAMSHA512 = "scram-sha-512"
)

// Mechanisms lists the SASL mechanisms Config accepts.
var Mechanisms = []string{MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512}

// Config is how streamrec's Kafka clients secure their connections.
type Config struct {
	// TLS connects over TLS, verifying the brokers against the system's CA
	// roots (or CAFile). Setting CAFile, CertFile or InsecureSkipVerify
	// implies TLS.
	TLS bool
	// CAFile is a PEM file of the CA certificates that verify the brokers,
	// instead of the system roots (a private CA).
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// brokers that require mutual TLS. Both or neither.
	CertFile string
	KeyFile  string
	// InsecureSkipVerify accepts any broker certificate. For tests only: it
	// makes TLS open to interception.
	InsecureSkipVerify bool

	// SASLMechanism is "" (no SASL), "plain", "scram-sha-256" or
	// "scram-sha-512". Username and Password are its credentials, required
	// with a mechanism and refused without one.
	SASLMechanism string
	Username      string
	Password      string
}

// UsesTLS reports whether the clients connect over TLS.
func (c Config) UsesTLS() bool {
	return c.TLS || c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" || c.InsecureSkipVerify
}

// IsZero reports whether c is plain TCP without SASL (today's default).
func (c Config) IsZero() bool { return c == Config{} }

// mechanism returns the normalised SASL mechanism.
func (c Config) mechanism() string { return strings.ToLower(strings.TrimSpace(c.SASLMechanism)) }

// Validate reports every problem at once: an unknown mechanism, SASL
// without a user or password, credentials without SASL, a key without its
// certificate (or the reverse), and CA or certificate files that cannot be
// read or parsed.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("kafka security: "+format, args...)) }
	switch m := c.mechanism(); m {
	case "":
		if c.Username != "" || c.Password != "" {
			bad("a user or password is set but no SASL mechanism (want one of %s)", strings.Join(Mechanisms, ", "))
		}
	case MechanismPlain, MechanismSCRAMSHA256, MechanismSCRAMSHA512:
		if c.Username == "" {
			bad("SASL %s needs a user name", m)
		}
		if c.Password == "" {
			bad("SASL %s needs a password", m)
		}
	default:
		bad("unknown SASL mechanism %q (want one of %s)", c.SASLMechanism, strings.Join(Mechanisms, ", "))
	}
	switch {
	case c.KeyFile != "" && c.CertFile == "":
		bad("client key %s given without its certificate", c.KeyFile)
	case c.CertFile != "" && c.KeyFile == "":
		bad("client certificate %s given without its key", c.CertFile)
	case c.CertFile != "":
		if _, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile); err != nil {
			bad("client certificate %s and key %s: %w", c.CertFile, c.KeyFile, err)
		}
	}
	if c.CAFile != "" {
		if _, err := loadCA(c.CAFile); err != nil {
			errs = append(errs, fmt.Errorf("kafka security: %w", err))
		}
	}
	return errors.Join(errs...)
}

// loadCA reads a PEM file of CA certificates into a pool.
func loadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s: no PEM certificates in it", path)
	}
	return pool, nil
}

// TLSConfig returns the client TLS configuration, nil when c does not use
// TLS. TLS 1.2 is the minimum.
func (c Config) TLSConfig() (*tls.Config, error) {
	if !c.UsesTLS() {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.InsecureSkipVerify}
	if c.CAFile != "" {
		pool, err := loadCA(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka security: %w", err)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" || c.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka security: client certificate %s and key %s: %w", c.CertFile, c.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// SASL returns the SASL mechanism, nil when c has none.
func (c Config) SASL() (sasl.Mechanism, error) {
	switch m := c.mechanism(); m {
	case "":
		return nil, nil
	case MechanismPlain:
		return plain.Mechanism{Username: c.Username, Password: c.Password}, nil
	case MechanismSCRAMSHA256, MechanismSCRAMSHA512:
		algo := scram.SHA256
		if m == MechanismSCRAMSHA512 {
			algo = scram.SHA512
		}
		mech, err := scram.Mechanism(algo, c.Username, c.Password)
		if err != nil {
			return nil, fmt.Errorf("kafka security: SASL %s: %w", m, err)
		}
		return mech, nil
	default:
		return nil, fmt.Errorf("kafka security: unknown SASL mechanism %q", c.SASLMechanism)
	}
}

// build validates c and returns its TLS configuration and SASL mechanism.
func (c Config) build() (*tls.Config, sasl.Mechanism, error) {
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	tc, err := c.TLSConfig()
	if err != nil {
		return nil, nil, err
	}
	mech, err := c.SASL()
	if err != nil {
		return nil, nil, err
	}
	return tc, mech, nil
}

// Dialer returns a dialer for kafka-go readers, consumer groups and
// connections, with the given connect timeout (which includes the TLS
// handshake and the SASL exchange). For the zero Config it equals
// kafka.DefaultDialer with that timeout.
func (c Config) Dialer(timeout time.Duration) (*kafka.Dialer, error) {
	tc, mech, err := c.build()
	if err != nil {
		return nil, err
	}
	return &kafka.Dialer{Timeout: timeout, DualStack: true, TLS: tc, SASLMechanism: mech}, nil
}

// Transport returns a transport for kafka-go writers. For the zero Config
// its fields equal kafka.DefaultTransport's. A Transport keeps a connection
// pool: its owner calls CloseIdleConnections when done with it.
func (c Config) Transport() (*kafka.Transport, error) {
	tc, mech, err := c.build()
	if err != nil {
		return nil, err
	}
	return &kafka.Transport{
		Dial: (&net.Dialer{Timeout: 3 * time.Second}).DialContext, // as kafka.DefaultTransport (dual stack is net's default)
		TLS:  tc,
		SASL: mech,
	}, nil
}

// Probe connects to the brokers in turn with c's dialer — TCP, the TLS
// handshake, the SASL login, and one metadata request — and returns nil as
// soon as one broker answers, else every broker's error. Each attempt is
// bounded by timeout. kafka-go's writers report a refused SASL login only as
// "unexpected EOF"; Probe reports the broker's reason ("SASL
// Authentication failed", "certificate signed by unknown authority", …).
func (c Config) Probe(ctx context.Context, brokers []string, timeout time.Duration) error {
	d, err := c.Dialer(timeout)
	if err != nil {
		return err
	}
	if len(brokers) == 0 {
		return errors.New("kafka: no brokers")
	}
	var errs []error
	for _, b := range brokers {
		if err := probe(ctx, d, b, timeout); err != nil {
			errs = append(errs, fmt.Errorf("kafka %s (%s): %w", b, c, err))
			continue
		}
		return nil
	}
	return errors.Join(errs...)
}

func probe(ctx context.Context, d *kafka.Dialer, broker string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", broker)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	if _, err := conn.Brokers(); err != nil {
		return fmt.Errorf("metadata request: %w", err)
	}
	return nil
}

// String describes c for logs, without the password.
func (c Config) String() string {
	var parts []string
	if c.UsesTLS() {
		t := "tls"
		if c.CAFile != "" {
			t += " ca=" + c.CAFile
		}
		if c.CertFile != "" {
			t += " cert=" + c.CertFile
		}
		if c.InsecureSkipVerify {
			t += " insecure-skip-verify"
		}
		parts = append(parts, t)
	} else {
		parts = append(parts, "plaintext")
	}
	if m := c.mechanism(); m != "" {
		parts = append(parts, "sasl "+m+" user="+c.Username)
	}
	return strings.Join(parts, ", ")
}
