package main

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/oklog/run"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/streamrec/streamrec"
	"github.com/streamrec/streamrec/features"
	"github.com/streamrec/streamrec/ingest"
	"github.com/streamrec/streamrec/ingest/broker"
	"github.com/streamrec/streamrec/ingest/dataset"
	"github.com/streamrec/streamrec/ingest/produce"
	"github.com/streamrec/streamrec/learner"
	"github.com/streamrec/streamrec/serve"
)

// runConfig is `streamrec run`'s configuration.
type runConfig struct {
	addr, brokers, redis, brokerAddr, apiKey string
	demo                                     bool
	demoData                                 string
	demoRate                                 float64
	partitions                               int
	stream                                   learner.StreamConfig
	ingest                                   ingest.Config
	// kafka secures the connections to external --brokers; redisTLS the
	// connections to --redis.
	kafka    *kafkaFlags
	redisTLS redisTLS
}

// runRun is `streamrec run`: the embedded default — broker, feature store,
// ingest, learner, HTTP server and demo producer in one process. Every part
// joins one actor group: when one stops, all stop.
func runRun(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("run", env)
	rc := runConfig{stream: learner.DefaultStreamConfig(), ingest: ingest.DefaultConfig()}
	fs.StringVar(&rc.addr, "addr", ":8080", "HTTP API address")
	fs.StringVar(&rc.brokers, "brokers", "", "Kafka brokers (empty: start the embedded broker)")
	fs.StringVar(&rc.redis, "redis", "", "Redis address for features and snapshots (empty: in memory)")
	redisTLS := registerRedisTLS(fs)
	rc.kafka = registerKafkaFlags(fs)
	fs.StringVar(&rc.brokerAddr, "broker-addr", "127.0.0.1:9092", "embedded broker address; a free port is used when it is taken")
	fs.IntVar(&rc.partitions, "partitions", 3, "partitions of the embedded broker's topics")
	fs.BoolVar(&rc.demo, "demo", true, "publish demo data (synthetic catalogue and events, stamped with the wall clock)")
	fs.StringVar(&rc.demoData, "demo-data", "synthetic:users=500,items=1000,events=200000,seed=1", "data spec the demo producer publishes")
	fs.Float64Var(&rc.demoRate, "demo-rate", 500, "demo events per second")
	fs.StringVar(&rc.apiKey, "api-key", "", "API key for write and admin endpoints (empty: none)")
	every := fs.String("snapshot-every", "5s,10000", "publish a model snapshot so that no event waits longer than DURATION to be served, or once COUNT events wait")
	configPath := fs.String("config", "", "learner config file (JSON, as written by streamrec tune)")
	seed := fs.Int64("seed", -1, "random seed (overrides the config's; -1: keep)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := parseFlags(fs, args, env); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	var err error
	if rc.stream.SnapshotInterval, rc.stream.SnapshotEvents, err = learner.ParseSnapshotEvery(*every); err != nil {
		return usagef("%v", err)
	}
	if rc.stream.Learner, err = learnConfig(*configPath, *seed); err != nil {
		return err
	}
	if rc.demoRate <= 0 {
		return usagef("--demo-rate must be positive")
	}
	if err := rc.kafka.validate(); err != nil {
		return err
	}
	if rc.kafka.set() && len(splitList(rc.brokers)) == 0 {
		return usagef("the --kafka-* security flags apply to external --brokers; the embedded broker is plaintext")
	}
	if err := redisTLS.validate(); err != nil {
		return err
	}
	rc.redisTLS = *redisTLS
	log, err := newLogger(env, *level)
	if err != nil {
		return err
	}
	return runEmbedded(ctx, rc, env, log)
}

func runEmbedded(ctx context.Context, rc runConfig, env Env, log zerolog.Logger) error {
	if rc.kafka == nil {
		rc.kafka = &kafkaFlags{}
	}
	kc, err := rc.kafka.clients(log)
	if err != nil {
		return err
	}
	defer kc.Close()
	rc.ingest.Dialer, rc.ingest.Transport, rc.stream.Dialer = kc.Dialer, kc.Transport, kc.Dialer
	brokers := splitList(rc.brokers)
	if len(brokers) == 0 {
		b, err := startEmbeddedBroker(rc.brokerAddr, rc.partitions, log)
		if err != nil {
			return err
		}
		defer b.Close()
		brokers = b.Addrs()
		fmt.Fprintf(env.Stderr, "streamrec: embedded Kafka broker on %s\n", brokers[0])
	}

	fcfg := features.DefaultConfig()
	fcfg.RecentCap = rc.stream.Learner.RecentCap
	store, err := openStore(ctx, rc.redis, rc.redisTLS, 0, fcfg, log)
	if err != nil {
		return err
	}
	defer store.Close()
	rc.kafka.warnProbe(ctx, brokers, log)
	snaps, closeSnaps, err := openSnapshots(rc.redis, rc.redisTLS, rc.stream.Learner.SnapshotKeep, log)
	if err != nil {
		return err
	}
	defer closeSnaps()

	reg := newRegistry()
	rc.ingest.Brokers = brokers
	cons, err := ingest.New(rc.ingest, store, reg, log)
	if err != nil {
		return err
	}
	rc.stream.Brokers = brokers
	if err := rc.stream.Validate(); err != nil {
		return usagef("%v", err)
	}
	lrn, err := learner.NewStreamLearner(rc.stream, store, snaps, reg, log)
	if err != nil {
		return err
	}
	events, err := serve.NewKafkaEventsTransport(brokers, streamrec.TopicEvents, kc.Transport)
	if err != nil {
		return err
	}
	defer events.Close()
	scfg := serve.DefaultConfig()
	scfg.Addr, scfg.APIKey = rc.addr, rc.apiKey
	srv, err := serve.New(scfg, serve.Deps{
		Features: store, Snapshots: snaps, Events: events,
		Inspect:  http.StripPrefix("/v1/inspect", features.NewInspectHandler(store)),
		Registry: reg, Log: log,
	})
	if err != nil {
		return err
	}
	status := &statusPage{store: store, learner: lrn, server: srv, brokers: brokers, redis: rc.redis}
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", status)
	mux.Handle("/", srv.Handler())
	hctx, stopHTTP := context.WithCancel(ctx)
	defer stopHTTP()
	addr, httpDone, err := serveHTTP(hctx, rc.addr, mux, log)
	if err != nil {
		return err
	}
	status.port = portOf(addr)
	fmt.Fprintf(env.Stderr, "streamrec: HTTP on %s — try: curl -s localhost:%s/v1/popular\n", addr, portOf(addr))
	if env.Ready != nil {
		env.Ready(map[string]string{"http": addr, "kafka": brokers[0]})
	}

	var g run.Group
	actor := func(name string, fn func(context.Context) error) {
		actx, cancel := context.WithCancel(ctx)
		g.Add(func() error {
			err := fn(actx)
			if err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		}, func(error) { cancel() })
	}
	actor("ingest", cons.Run)
	actor("learner", lrn.Run)
	actor("snapshots", srv.RunSnapshots)
	actor("http", func(c context.Context) error {
		select {
		case err := <-httpDone:
			return err
		case <-c.Done():
			stopHTTP()
			return <-httpDone
		}
	})
	if rc.demo {
		actor("demo producer", func(c context.Context) error { return runDemo(c, rc, brokers, kc.Transport, log) })
	}
	// The group ends when ctx does (signal) or when any actor fails.
	actor("signal", func(c context.Context) error { <-c.Done(); return c.Err() })
	err = g.Run()
	stopHTTP()
	return err
}

// startEmbeddedBroker starts kfake on addr, or on a free port when addr is taken.
func startEmbeddedBroker(addr string, partitions int, log zerolog.Logger) (*broker.Broker, error) {
	bcfg := broker.DefaultConfig()
	bcfg.Addr, bcfg.Partitions = addr, partitions
	if err := bcfg.Validate(); err != nil {
		return nil, usagef("%v", err)
	}
	b, err := broker.Start(bcfg, log)
	if err == nil {
		return b, nil
	}
	log.Warn().Err(err).Str("addr", addr).Msg("embedded broker address taken; using a free port")
	host, _, _ := net.SplitHostPort(addr)
	bcfg.Addr = net.JoinHostPort(host, "0")
	return broker.Start(bcfg, log)
}

// openSnapshots returns the Redis snapshot store, or an in-process one.
func openSnapshots(redisAddr string, rt redisTLS, keep int, log zerolog.Logger) (learner.SnapshotStore, func(), error) {
	if strings.TrimSpace(redisAddr) == "" {
		return learner.NewMemorySnapshots(keep), func() {}, nil
	}
	client, err := openRedisClient(redisAddr, rt)
	if err != nil {
		return nil, nil, err
	}
	return learner.NewRedisSnapshots(client, keep, log), func() { client.Close() }, nil
}

// runDemo publishes the demo data set, stamped with the wall clock, looping.
func runDemo(ctx context.Context, rc runConfig, brokers []string, transport kafka.RoundTripper, log zerolog.Logger) error {
	d, err := dataset.Load(ctx, rc.demoData, dataset.Options{})
	if err != nil {
		return fmt.Errorf("demo data: %w", err)
	}
	opts := produce.DefaultOptions()
	opts.Brokers, opts.Rate, opts.Retime, opts.Loop = brokers, rc.demoRate, true, true
	opts.Transport = transport
	opts.ProgressEvery = time.Minute
	_, err = produce.Run(ctx, d, opts, log.With().Str("component", "demo").Logger())
	return err
}

func portOf(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return p
}

// statusPage is the embedded default's human-readable front page.
type statusPage struct {
	store   features.Store
	learner *learner.StreamLearner
	server  *serve.Server
	brokers []string
	redis   string
	port    string
}

var statusTmpl = template.Must(template.New("status").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>streamrec</title><meta http-equiv="refresh" content="2">
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}td{padding:.2em 1em}code{background:#eee;padding:0 .3em}</style></head>
<body><h1>streamrec</h1>
<table>
<tr><td>events in the feature store</td><td><b>{{.Global.Events}}</b> ({{.Global.Explicit}} explicit)</td></tr>
<tr><td>users / items</td><td>{{.Global.Users}} / {{.Global.Items}}</td></tr>
<tr><td>model version</td><td>{{.ModelVersion}}</td></tr>
<tr><td>learner</td><td>{{.Learner}}</td></tr>
<tr><td>Kafka</td><td>{{.Brokers}}</td></tr>
<tr><td>feature store</td><td>{{.Store}}</td></tr>
</table>
<p>Try <code>curl -s localhost{{.Port}}/v1/popular?n=5</code>,
<code>curl -s 'localhost{{.Port}}/v1/users/{{.SampleUser}}/recommendations?n=5'</code>,
<a href="/v1/model">/v1/model</a>, <a href="/metrics">/metrics</a>, <a href="/openapi.json">/openapi.json</a>.</p>
</body></html>`))

func (p *statusPage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g, err := p.store.Global(r.Context())
	if err != nil {
		http.Error(w, "feature store: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	store := "in memory"
	if p.redis != "" {
		store = "Redis " + redactRedisAddr(p.redis)
	}
	sample := "u1"
	_ = p.store.EachUser(r.Context(), func(u features.User) error { sample = u.ID; return errStopEach })
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = statusTmpl.Execute(w, map[string]any{
		"Global": g, "ModelVersion": p.server.ModelVersion(), "Learner": learnerSummary(p.learner.Status()),
		"Brokers": strings.Join(p.brokers, ","), "Store": store, "Port": ":" + p.port, "SampleUser": sample,
	})
}

var errStopEach = errors.New("stop")

func learnerSummary(st learner.Status) string {
	return fmt.Sprintf("%d events trained, snapshot v%d, %d held back, windowed RMSE %.3f, HR@10 %.3f",
		st.Events, st.Version, st.HeldBack, st.Metrics["rmse"], st.Metrics["hr@10"])
}
