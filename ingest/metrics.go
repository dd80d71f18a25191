package ingest

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/streamrec/streamrec"
)

type metrics struct {
	consumed   prometheus.Counter
	applied    prometheus.Counter
	duplicates prometheus.Counter
	items      prometheus.Counter
	dlq        *prometheus.CounterVec
	retries    *prometheus.CounterVec
	batches    prometheus.Counter
	batchSize  prometheus.Histogram
	writeSecs  prometheus.Histogram
	latency    prometheus.Histogram
	lag        prometheus.Gauge
	committed  *prometheus.GaugeVec
}

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		consumed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamrec_ingest_events_consumed_total", Help: "Messages fetched from Kafka (events and item metadata)."}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamrec_ingest_events_applied_total", Help: "Events that changed the feature store."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamrec_ingest_events_duplicates_total", Help: "Redelivered events the store skipped (exactly-once effect)."}),
		items: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamrec_ingest_items_total", Help: "Item metadata records written to the store."}),
		dlq: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamrec_ingest_dlq_total", Help: "Messages sent to the dead-letter topic, by reason."}, []string{"reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamrec_ingest_retries_total", Help: "Retries after a failed store write, DLQ write or offset commit."}, []string{"op"}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamrec_ingest_batches_total", Help: "Batches written and committed."}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "streamrec_ingest_batch_size", Help: "Messages per batch.",
			Buckets: []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000}}),
		writeSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "streamrec_ingest_write_seconds", Help: "Time to write a batch to the store (including retries).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "streamrec_ingest_event_latency_seconds", Help: "From the Kafka record timestamp to the event being durable in the store.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "streamrec_ingest_consumer_lag", Help: "Consumer lag in messages, as the Kafka reader last reported it."}),
		committed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "streamrec_ingest_committed_offset", Help: "Next offset to consume, as last committed, per topic and partition."},
			[]string{"topic", "partition"}),
	}
	for _, c := range []prometheus.Collector{m.consumed, m.applied, m.duplicates, m.items, m.dlq, m.retries,
		m.batches, m.batchSize, m.writeSecs, m.latency, m.lag, m.committed} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("ingest: register metrics: %w", err)
		}
	}
	for _, r := range streamrec.Reasons {
		m.dlq.WithLabelValues(r)
	}
	for _, op := range []string{opApply, opItems, opDLQ, opCommit} {
		m.retries.WithLabelValues(op)
	}
	return m, nil
}
