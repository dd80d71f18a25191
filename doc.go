// Package streamrec holds the domain types of the streamrec online recommender:
// interaction events and their kinds, item metadata, the event decoder that
// enforces the event contract, and the coded Error type.
//
// It imports only the standard library; every other package (ingest,
// features, learner, serve) builds on it, and cmd/streamrec wires them.
package streamrec
