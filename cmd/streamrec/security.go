package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/streamrec/streamrec/ingest/kafkasec"
)

// kafkaFlags are the Kafka security flags (--kafka-*) shared by every
// subcommand that talks to Kafka. Like every flag they also read
// STREAMREC_<NAME>; the password is best given as STREAMREC_KAFKA_PASSWORD,
// so that it is not on a command line. It is never logged.
type kafkaFlags struct {
	cfg kafkasec.Config
}

func registerKafkaFlags(fs *flag.FlagSet) *kafkaFlags {
	k := &kafkaFlags{}
	fs.BoolVar(&k.cfg.TLS, "kafka-tls", false, "connect to Kafka over TLS, verifying the brokers with the system CA roots (or --kafka-ca)")
	fs.StringVar(&k.cfg.CAFile, "kafka-ca", "", "PEM file of the CA certificates that verify the Kafka brokers (implies --kafka-tls)")
	fs.StringVar(&k.cfg.CertFile, "kafka-cert", "", "PEM client certificate for Kafka mutual TLS, with --kafka-key (implies --kafka-tls)")
	fs.StringVar(&k.cfg.KeyFile, "kafka-key", "", "PEM private key of --kafka-cert")
	fs.StringVar(&k.cfg.SASLMechanism, "kafka-sasl-mechanism", "", "Kafka SASL mechanism: plain, scram-sha-256 or scram-sha-512 (empty: no SASL)")
	fs.StringVar(&k.cfg.Username, "kafka-user", "", "Kafka SASL user name")
	fs.StringVar(&k.cfg.Password, "kafka-password", "", "Kafka SASL password (prefer STREAMREC_KAFKA_PASSWORD to the command line)")
	return k
}

// validator is a group of flags a subcommand checks before it starts.
type validator interface{ validate() error }

// validateAll checks groups in order and returns the first problem.
func validateAll(groups ...validator) error {
	for _, g := range groups {
		if err := g.validate(); err != nil {
			return err
		}
	}
	return nil
}

// validate checks the flags; problems are usage errors.
func (k *kafkaFlags) validate() error {
	if err := k.cfg.Validate(); err != nil {
		return usagef("%v", err)
	}
	return nil
}

// set reports whether any security flag was given.
func (k *kafkaFlags) set() bool { return !k.cfg.IsZero() }

// kafkaClients are what the Kafka clients of one process take: nil Dialer
// and Transport without security flags (kafka-go's defaults, plain TCP).
type kafkaClients struct {
	Dialer    *kafka.Dialer
	Transport kafka.RoundTripper
	// Close closes the transport's idle connections (after its writers).
	Close func()
}

// clients builds the dialer and transport of the flags, logs the security
// in use (never the password), and warns about a password sent in clear.
func (k *kafkaFlags) clients(log zerolog.Logger) (kafkaClients, error) {
	kc := kafkaClients{Close: func() {}}
	if !k.set() {
		return kc, nil
	}
	d, err := k.cfg.Dialer(10 * time.Second)
	if err != nil {
		return kc, usagef("%v", err)
	}
	t, err := k.cfg.Transport()
	if err != nil {
		return kc, usagef("%v", err)
	}
	kc.Dialer, kc.Transport, kc.Close = d, t, t.CloseIdleConnections
	log.Info().Str("kafka_security", k.cfg.String()).Msg("kafka: secured connections")
	if !k.cfg.UsesTLS() && k.cfg.SASLMechanism != "" {
		log.Warn().Msg("kafka: SASL without TLS; the login (and with PLAIN the password) crosses the network unencrypted")
	}
	return kc, nil
}

// probe checks, when security flags are set, that a broker accepts the
// connection, to report a refused TLS handshake or SASL login by its
// reason (kafka-go's writers say only "unexpected EOF").
func (k *kafkaFlags) probe(ctx context.Context, brokers []string) error {
	if !k.set() {
		return nil
	}
	return k.cfg.Probe(ctx, brokers, 10*time.Second)
}

// warnProbe logs a failed probe (each broker given 5 s): long-running
// commands start anyway and keep retrying, as they do while Kafka is down.
func (k *kafkaFlags) warnProbe(ctx context.Context, brokers []string, log zerolog.Logger) {
	if !k.set() {
		return
	}
	if err := k.cfg.Probe(ctx, brokers, 5*time.Second); err != nil && ctx.Err() == nil {
		log.Warn().Err(err).Msg("kafka: no broker accepts the connection with the configured security; retrying")
	}
}

// redisTLS holds --redis-ca, --redis-cert and --redis-key: a private CA
// that verifies Redis, and a client certificate for Redis servers that
// require one (tls-auth-clients yes).
type redisTLS struct {
	CAFile, CertFile, KeyFile string
}

func registerRedisTLS(fs *flag.FlagSet) *redisTLS {
	r := &redisTLS{}
	fs.StringVar(&r.CAFile, "redis-ca", "", "PEM file of the CA certificates that verify Redis (implies TLS for host:port addresses; not with redis://)")
	fs.StringVar(&r.CertFile, "redis-cert", "", "PEM client certificate for Redis, with --redis-key (implies TLS)")
	fs.StringVar(&r.KeyFile, "redis-key", "", "PEM private key of --redis-cert")
	return r
}

// enabled reports whether any Redis TLS flag was given.
func (r redisTLS) enabled() bool { return r != redisTLS{} }

// validate checks that the files load; problems are usage errors.
func (r redisTLS) validate() error {
	if _, err := r.config(nil); err != nil {
		return usagef("%v", err)
	}
	return nil
}

// config returns base (cloned; a new TLS 1.2+ configuration when nil) with
// the CA and the client certificate of r, or base itself when r is empty.
func (r redisTLS) config(base *tls.Config) (*tls.Config, error) {
	if !r.enabled() {
		return base, nil
	}
	var c *tls.Config
	if base != nil {
		c = base.Clone()
	} else {
		c = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if c.MinVersion == 0 {
		c.MinVersion = tls.VersionTLS12
	}
	if r.CAFile != "" {
		pem, err := os.ReadFile(r.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redis CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis CA file %s: no PEM certificates in it", r.CAFile)
		}
		c.RootCAs = pool
	}
	switch {
	case r.CertFile == "" && r.KeyFile == "":
	case r.CertFile == "" || r.KeyFile == "":
		return nil, errors.New("redis client certificate: --redis-cert and --redis-key go together")
	default:
		cert, err := tls.LoadX509KeyPair(r.CertFile, r.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("redis client certificate %s and key %s: %w", r.CertFile, r.KeyFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
