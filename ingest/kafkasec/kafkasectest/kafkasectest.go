// Package kafkasectest runs the embedded broker secured as a production
// cluster would be — TLS with a certificate of a throw-away private CA, and
// SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) for one user — and hands tests
// the client settings that reach it, so that every Kafka client of
// streamrec can be tested over the wire with TLS and SASL.
package kafkasectest

import (
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/streamrec/streamrec/ingest/broker"
	"github.com/streamrec/streamrec/ingest/kafkasec"
	"github.com/streamrec/streamrec/internal/testpki"
)

// The SASL user every secured broker accepts.
const (
	User     = "streamrec"
	Password = "s3cret-p4ss"
)

// Broker is a running secured broker.
type Broker struct {
	// Addr is the broker's host:port.
	Addr string
	// PKI holds the CA (PKI.CAFile) that signed the broker's certificate.
	PKI *testpki.PKI
	// Broker is the embedded broker.
	Broker *broker.Broker
}

// Start runs a secured broker with the contract's topics (partitions each)
// for the test; it stops when the test ends.
func Start(tb testing.TB, partitions int) *Broker {
	tb.Helper()
	pki := testpki.New(tb)
	cfg := broker.DefaultConfig()
	cfg.Addr, cfg.Partitions = "127.0.0.1:0", partitions
	cfg.TLSCertFile, cfg.TLSKeyFile = pki.ServerCertFile, pki.ServerKeyFile
	cfg.SASLUser, cfg.SASLPassword = User, Password
	b, err := broker.Start(cfg, zerolog.Nop())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = b.Close() })
	return &Broker{Addr: b.Addrs()[0], PKI: pki, Broker: b}
}

// Config is the client configuration that reaches the broker with SASL
// mechanism (one of kafkasec.Mechanisms): TLS verified by the private CA.
func (b *Broker) Config(mechanism string) kafkasec.Config {
	return kafkasec.Config{TLS: true, CAFile: b.PKI.CAFile, SASLMechanism: mechanism, Username: User, Password: Password}
}

// Dialer is c's dialer, with a 10 s connect timeout.
func Dialer(tb testing.TB, c kafkasec.Config) *kafka.Dialer {
	tb.Helper()
	d, err := c.Dialer(10 * time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// Transport is c's transport; its idle connections are closed when the
// test ends.
func Transport(tb testing.TB, c kafkasec.Config) *kafka.Transport {
	tb.Helper()
	t, err := c.Transport()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(t.CloseIdleConnections)
	return t
}
