// Package broker runs the embedded Kafka-protocol broker (kfake from
// franz-go) that backs `streamrec run` and `streamrec broker`: one node
// speaking the real Kafka wire protocol on a TCP address, with the topics of
// the event contract pre-created. Any Kafka client (kcat, librdkafka, Java,
// kafka-go) can publish to and consume from it.
//
// It can be secured like a production cluster, for trying the clients'
// security settings: TLS with a given certificate (TLS only, no plaintext
// listener) and SASL with one user, accepted with PLAIN, SCRAM-SHA-256 and
// SCRAM-SHA-512.
//
// With a data directory the broker persists its topics, records, consumer
// group offsets and producer state on disk (kfake's own persistence) and
// reloads them on the next start.
package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/rs/zerolog"
	"github.com/streamrec/streamrec"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
)

// DefaultAddr is where the embedded broker listens by default.
const DefaultAddr = "127.0.0.1:9092"

// Config configures the embedded broker.
type Config struct {
	// Addr is the TCP address to listen on; port 0 picks a free port.
	Addr string
	// Partitions is the partition count of the pre-created topics.
	Partitions int
	// DataDir, when set, persists the broker's state there and reloads it on
	// start. Empty keeps everything in memory.
	DataDir string
	// Topics are pre-created (if missing) with Partitions partitions.
	Topics []string
	// TLSCertFile and TLSKeyFile, both or neither, are the PEM certificate
	// and key of a TLS listener; then the broker speaks only TLS.
	TLSCertFile, TLSKeyFile string
	// SASLUser and SASLPassword, both or neither, require every client to
	// authenticate as that user with PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	SASLUser, SASLPassword string
}

// DefaultConfig returns the contract defaults: 127.0.0.1:9092, 3 partitions,
// in memory, the events, items and dead-letter topics.
func DefaultConfig() Config {
	return Config{
		Addr:       DefaultAddr,
		Partitions: 3,
		Topics:     []string{streamrec.TopicEvents, streamrec.TopicItems, streamrec.TopicDLQ},
	}
}

// Validate checks c field by field.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("broker: addr %q: %w", c.Addr, err)
	}
	if c.Partitions < 1 || c.Partitions > 1024 {
		return fmt.Errorf("broker: partitions must be 1–1024, got %d", c.Partitions)
	}
	for _, t := range c.Topics {
		if t == "" || strings.ContainsAny(t, " /\\") {
			return fmt.Errorf("broker: bad topic name %q", t)
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("broker: TLS needs both a certificate and a key file")
	}
	if c.TLSCertFile != "" {
		if _, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile); err != nil {
			return fmt.Errorf("broker: TLS certificate %s and key %s: %w", c.TLSCertFile, c.TLSKeyFile, err)
		}
	}
	if (c.SASLUser == "") != (c.SASLPassword == "") {
		return errors.New("broker: SASL needs both a user and a password")
	}
	return nil
}

// Broker is a running embedded broker.
type Broker struct {
	c   *kfake.Cluster
	log zerolog.Logger
}

// Start starts the broker and pre-creates cfg.Topics. It returns once the
// broker accepts connections.
func Start(cfg Config, log zerolog.Logger) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ClusterID("streamrec"),
		kfake.DefaultNumPartitions(cfg.Partitions),
		kfake.WithLogger(kfakeLogger{log}),
		// kfake asks for 127.0.0.1:<port>; listen on the configured address.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, cfg.Addr)
		}),
	}
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("broker: TLS certificate: %w", err)
		}
		opts = append(opts, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
	}
	if cfg.SASLUser != "" {
		opts = append(opts, kfake.EnableSASL())
		for _, m := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
			opts = append(opts, kfake.Superuser(m, cfg.SASLUser, cfg.SASLPassword))
		}
	}
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return nil, fmt.Errorf("broker: data dir: %w", err)
		}
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("broker: start on %s: %w", cfg.Addr, err)
	}
	if cfg.SASLUser != "" {
		if err := advertiseSASLHandshakeV0(c, kfake.ClusterID("streamrec")); err != nil {
			c.Close()
			return nil, err
		}
	}
	b := &Broker{c: c, log: log}
	for _, t := range cfg.Topics {
		// A reloaded data directory already has its topics (and their
		// partition counts); creating them again is not an error.
		if err := c.CreateTopic(t, int32(cfg.Partitions), nil); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			c.Close()
			return nil, fmt.Errorf("broker: create topic %s: %w", t, err)
		}
	}
	log.Info().Strs("addrs", b.Addrs()).Int("partitions", cfg.Partitions).Str("data_dir", cfg.DataDir).
		Strs("topics", cfg.Topics).Bool("tls", cfg.TLSCertFile != "").Str("sasl_user", cfg.SASLUser).
		Msg("embedded kafka broker listening")
	return b, nil
}

// Addrs returns the host:port addresses the broker listens on (one).
func (b *Broker) Addrs() []string { return b.c.ListenAddrs() }

// Partitions returns the partition count of topic, 0 when it does not exist.
func (b *Broker) Partitions(topic string) int {
	ti := b.c.TopicInfo(topic)
	if ti == nil {
		return 0
	}
	return len(b.c.PartitionInfos(topic))
}

// Cluster exposes the underlying kfake cluster (tests use it to inspect
// groups and inject faults).
func (b *Broker) Cluster() *kfake.Cluster { return b.c }

// Close stops the broker; with a data directory it saves its state first.
func (b *Broker) Close() error {
	b.c.Close()
	b.log.Info().Msg("embedded kafka broker stopped")
	return nil
}

// kfakeLogger forwards kfake's warnings and errors to zerolog.
type kfakeLogger struct{ log zerolog.Logger }

func (l kfakeLogger) Logf(lvl kfake.LogLevel, format string, args ...any) {
	switch lvl {
	case kfake.LogLevelError:
		l.log.Error().Str("component", "kfake").Msgf(format, args...)
	case kfake.LogLevelWarn:
		l.log.Warn().Str("component", "kfake").Msgf(format, args...)
	}
}
